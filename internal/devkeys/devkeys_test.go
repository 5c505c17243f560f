package devkeys

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateIsStable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.json")
	first, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first call: created=%v err=%v", created, err)
	}
	if first.LookupKeys == "" || first.MasterKey == "" || first.IdentityKey == "" || first.JWTKeys == "" || first.BootstrapAdminSecret == "" {
		t.Fatalf("missing secret: %+v", first)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", st.Mode(), err)
	}
	again, created, err := LoadOrCreate(path)
	if err != nil || created || again != first {
		t.Fatalf("second call must reuse the file: created=%v err=%v", created, err)
	}
}
