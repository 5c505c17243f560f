// Package devkeys keeps the secrets of demo mode in a local file, generating any that are
// missing. Demo mode must survive a restart (codes issued yesterday must still verify
// today), which freshly random keys on every start would break. Production never uses this:
// there a missing secret is a start-up error.
package devkeys

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/idprotect/enroll/internal/auth"
)

// Secrets are the demo-mode secrets, in the same text formats as the ENROLL_* variables.
type Secrets struct {
	LookupKeys           string `json:"lookup_keys"`
	MasterKey            string `json:"master_key"`
	IdentityKey          string `json:"identity_key"`
	JWTKeys              string `json:"jwt_keys"`
	BootstrapAdminSecret string `json:"bootstrap_admin_secret"`
}

// LoadOrCreate reads path, fills in any missing secret with a fresh random one, and writes the
// file back (mode 0600) if anything was added. created reports whether it generated any.
func LoadOrCreate(path string) (s Secrets, created bool, err error) {
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return s, false, fmt.Errorf("failed to read %s: %w", path, err)
	default:
		if err := json.Unmarshal(raw, &s); err != nil {
			return s, false, fmt.Errorf("failed to parse %s (delete it to start over): %w", path, err)
		}
	}
	fill := func(dst *string, gen func() (string, error)) error {
		if *dst != "" {
			return nil
		}
		v, err := gen()
		if err != nil {
			return err
		}
		*dst, created = v, true
		return nil
	}
	for _, f := range []struct {
		dst *string
		gen func() (string, error)
	}{
		{&s.LookupKeys, func() (string, error) { return keySpec("lk1") }},
		{&s.MasterKey, func() (string, error) { return keySpec("mk1") }},
		{&s.IdentityKey, func() (string, error) { return random32() }},
		{&s.JWTKeys, func() (string, error) {
			k, err := auth.GenerateSigningKey("jwt1")
			if err != nil {
				return "", err
			}
			return auth.EncodeSigningKey(k), nil
		}},
		{&s.BootstrapAdminSecret, auth.NewClientSecret},
	} {
		if err := fill(f.dst, f.gen); err != nil {
			return s, false, fmt.Errorf("failed to generate a demo secret: %w", err)
		}
	}
	if created {
		out, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(path, append(out, '\n'), 0o600); err != nil {
			return s, false, fmt.Errorf("failed to write %s: %w", path, err)
		}
	}
	return s, created, nil
}

func random32() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

func keySpec(id string) (string, error) {
	k, err := random32()
	if err != nil {
		return "", err
	}
	return id + ":" + k, nil
}
