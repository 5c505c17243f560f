package ctl_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/ctl"
	"github.com/idprotect/enroll/internal/demo"
	"github.com/idprotect/enroll/internal/server/servertest"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

func run(t *testing.T, s *servertest.Server, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"ENROLL_ADDR": s.App.GRPCAddr().String(), "ENROLL_CLIENT_ID": s.AdminID, "ENROLL_CLIENT_SECRET": s.AdminSecret}
	err := ctl.Run(context.Background(), args, ctl.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	return out.String(), errb.String(), err
}

// TestEnrollctl seeds the demo through the API, then drives enrollctl against it.
func TestEnrollctl(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t, gormtest.SQLite(t), time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	seeded, err := demo.Seed(context.Background(), s.Conn, s.AdminID, s.AdminSecret)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("client-create prints the secret once", func(t *testing.T) {
		out, _, err := run(t, s, "client-create", "--role", "partner", "--partner", "demo-monitor", "--name", "vendor")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "client_id=cli_") || !strings.Contains(out, "client_secret=ecs_") {
			t.Fatalf("output: %q", out)
		}
		if _, _, err := run(t, s, "client-create", "--role", "partner"); err == nil || !strings.Contains(err.Error(), "partner") {
			t.Fatalf("partner client without partner: %v", err)
		}
	})

	t.Run("counts", func(t *testing.T) {
		out, _, err := run(t, s, "counts", "--incident", demo.IncidentID)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "TOTAL") || !strings.Contains(out, "credit-applicants") {
			t.Fatalf("output: %q", out)
		}
		fields := strings.Fields(out[strings.Index(out, "TOTAL"):])
		if fields[1] != "5" {
			t.Fatalf("total issued = %s, want 5 (%q)", fields[1], out)
		}
	})

	t.Run("export writes every code of the batch", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "codes.csv")
		// The demo's first batch is the credit-applicants cohort: three people.
		batch := strings.TrimPrefix(seeded.Batches[0], "batches/")
		if _, stderr, err := run(t, s, "export", "--batch", batch, "-o", path); err != nil {
			t.Fatalf("export: %v (%s)", err, stderr)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recs, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 4 || recs[0][2] != "code" {
			t.Fatalf("want header + 3 rows, got %v", recs)
		}
		want := map[string]bool{}
		for _, c := range seeded.Codes {
			want[c.Code] = true
		}
		for _, r := range recs[1:] {
			if _, err := codes.Parse(r[2]); err != nil || !want[r[2]] {
				t.Fatalf("exported code %q not one of the issued codes", r[2])
			}
		}
		st, _ := os.Stat(path)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("export file mode %v, want 0600", st.Mode().Perm())
		}
		if _, _, err := run(t, s, "export", "--batch", batch, "-o", path); err == nil {
			t.Fatal("export overwrote an existing file")
		}
	})

	t.Run("no secret, no command", func(t *testing.T) {
		var out, errb bytes.Buffer
		err := ctl.Run(context.Background(), []string{"counts"}, ctl.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
		if err == nil || !strings.Contains(err.Error(), "ENROLL_CLIENT_SECRET") {
			t.Fatalf("missing secret: %v", err)
		}
		if _, _, err := run(t, s, "frobnicate"); err == nil {
			t.Fatal("unknown command accepted")
		}
	})
}
