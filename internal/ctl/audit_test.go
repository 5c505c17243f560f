package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/audit"
	"github.com/idprotect/enroll/internal/ctl"
	"github.com/idprotect/enroll/internal/demo"
	"github.com/idprotect/enroll/internal/server/servertest"
)

// verifyOffline runs enrollctl audit verify with no server address and no secret.
func verifyOffline(t *testing.T, path string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := ctl.Run(context.Background(), []string{"audit", "verify", path}, ctl.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	return out.String(), err
}

// exportAudit runs enrollctl audit export and returns the file's lines.
func exportAudit(t *testing.T, s *servertest.Server) (string, []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	out, stderr, err := run(t, s, "audit", "export", "-o", path)
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, stderr)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	lines = lines[:len(lines)-1] // after the last newline
	if !strings.Contains(out, fmt.Sprintf("exported %d audit entries", len(lines))) {
		t.Fatalf("export says %q for %d lines", out, len(lines))
	}
	return path, lines
}

// TestAuditVerify exports the chain a demo seeding wrote, then tampers with copies of the
// export: enrollctl audit verify passes the untouched one and names the line of each change.
func TestAuditVerify(t *testing.T) {
	t.Parallel()
	s := start(t)
	// Entries keep microseconds: an export that lost them would not verify.
	s.Clock.Advance(123456789 * time.Nanosecond)
	if _, err := demo.Seed(context.Background(), s.Conn, s.AdminID, s.AdminSecret); err != nil {
		t.Fatal(err)
	}
	path, lines := exportAudit(t, s)
	if len(lines) < 8 {
		t.Fatalf("the demo wrote only %d audit entries", len(lines))
	}
	out, err := verifyOffline(t, path)
	if err != nil || out != fmt.Sprintf("verified %d entries: the chain is intact up to seq %d\n", len(lines), len(lines)) {
		t.Fatalf("untouched export: %v\n%s", err, out)
	}

	edit := func(line int, change func(*audit.Entry)) func([]string) []string {
		return func(ls []string) []string {
			var e audit.Entry
			if err := json.Unmarshal([]byte(ls[line-1]), &e); err != nil {
				t.Fatal(err)
			}
			change(&e)
			b, err := e.MarshalLine()
			if err != nil {
				t.Fatal(err)
			}
			ls[line-1] = string(b)
			return ls
		}
	}
	tests := []struct {
		name     string
		tamper   func([]string) []string
		wantLine int
	}{
		{"a changed field", edit(5, func(e *audit.Entry) { e.Resource = "incidents/elsewhere" }), 5},
		{"a changed outcome, rehashed", edit(6, func(e *audit.Entry) { e.Outcome = "PermissionDenied"; e.Hash = e.ComputeHash() }), 7},
		{"a deleted line", func(ls []string) []string { return slices.Delete(ls, 3, 4) }, 4},
		{"two swapped lines", func(ls []string) []string { ls[3], ls[4] = ls[4], ls[3]; return ls }, 4},
		{"the first line deleted", func(ls []string) []string { return ls[1:] }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tampered := filepath.Join(t.TempDir(), "audit.jsonl")
			if err := os.WriteFile(tampered, []byte(strings.Join(tc.tamper(slices.Clone(lines)), "")), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := verifyOffline(t, tampered)
			want := fmt.Sprintf("line %d (seq ", tc.wantLine)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(out, want) {
				t.Fatalf("err = %v, output %q: want both to name %q", err, out, want)
			}
		})
	}

	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		if _, err := verifyOffline(t, filepath.Join(t.TempDir(), "missing.jsonl")); err == nil {
			t.Fatal("verified a missing file")
		}
		if _, err := verifyOffline(t, writeFile(t, "empty.jsonl", nil)); err == nil || !strings.Contains(err.Error(), "no audit entries") {
			t.Fatalf("empty export: %v", err)
		}
		var errb bytes.Buffer
		err := ctl.Run(context.Background(), []string{"audit", "verify", path, "extra"}, ctl.Env{Stdout: &errb, Stderr: &errb, Getenv: func(string) string { return "" }})
		if err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
			t.Fatalf("two files: %v", err)
		}
		if _, _, err := run(t, s, "audit", "export"); err == nil || !strings.Contains(err.Error(), "-o") {
			t.Fatalf("export without -o: %v", err)
		}
		if _, _, err := run(t, s, "audit", "export", "-o", path); err == nil {
			t.Fatal("audit export overwrote a file")
		}
	})
}
