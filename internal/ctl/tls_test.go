package ctl_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/ctl"
	"github.com/idprotect/enroll/internal/server/servertest"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
	"github.com/idprotect/enroll/internal/tlstest"
)

// enrollctl talks to a TLS server given the CA (flag or ENROLL_CA_FILE), and fails with a
// verification error, not silently, when it does not trust the certificate.
func TestEnrollctlOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "enroll test CA")
	leaf := ca.Issue(t, dir)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(otherCA, tlstest.NewCA(t, "someone else").PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s := servertest.Start(t, gormtest.SQLite(t), time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), func(c *config.Config) {
		c.TLSCert, c.TLSKey = leaf.CertFile, leaf.KeyFile
	})
	newIncident(t, s, "tls-breach")

	runEnv := func(extra map[string]string, args ...string) (string, error) {
		env := map[string]string{"ENROLL_ADDR": s.App.GRPCAddr().String(), "ENROLL_CLIENT_ID": s.AdminID, "ENROLL_CLIENT_SECRET": s.AdminSecret}
		for k, v := range extra {
			env[k] = v
		}
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := ctl.Run(ctx, args, ctl.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
		return out.String(), err
	}
	for _, c := range []struct {
		what string
		env  map[string]string
		args []string
	}{
		{"--ca-file", nil, []string{"--ca-file", caFile, "batches", "--incident", "tls-breach"}},
		{"ENROLL_CA_FILE", map[string]string{"ENROLL_CA_FILE": caFile}, []string{"batches", "--incident", "tls-breach"}},
		{"--tls-server-name", nil, []string{"--ca-file", caFile, "--tls-server-name", "localhost", "batches"}},
	} {
		if _, err := runEnv(c.env, c.args...); err != nil {
			t.Errorf("%s: %v", c.what, err)
		}
	}
	for _, c := range []struct {
		what string
		args []string
		want string
	}{
		{"untrusted CA", []string{"--ca-file", otherCA, "batches"}, "certificate"},
		{"system roots", []string{"--tls", "batches"}, "certificate"},
		{"plaintext to TLS", []string{"batches"}, "failed to authenticate"},
		{"name not in the certificate", []string{"--ca-file", caFile, "--tls-server-name", "enroll.example", "batches"}, "enroll.example"},
	} {
		if _, err := runEnv(nil, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error mentioning %q, got %v", c.what, c.want, err)
		}
	}
}
