package ctl_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idprotect/enroll/internal/ctl"
	"github.com/idprotect/enroll/internal/eligibility"
)

// runOffline runs enrollctl with no environment at all (no secret, no address) and an
// address where nothing listens, so any attempt to reach a server would fail.
func runOffline(t *testing.T, args ...string) ([]byte, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := ctl.Run(context.Background(), append([]string{"--addr", "127.0.0.1:1"}, args...),
		ctl.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	return out.Bytes(), errb.String(), err
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

func TestGenEligibilityIsDeterministicAndOffline(t *testing.T) {
	t.Parallel()
	gen := func(t *testing.T, args ...string) []byte {
		t.Helper()
		out, stderr, err := runOffline(t, append([]string{"gen-eligibility"}, args...)...)
		if err != nil {
			t.Fatalf("gen-eligibility %v: %v (%s)", args, err, stderr)
		}
		return out
	}
	plain := gen(t, "--rows", "500", "--seed", "7", "--malformed", "5")
	if !bytes.Equal(plain, gen(t, "--rows", "500", "--seed", "7", "--malformed", "5")) {
		t.Fatal("same seed gave different bytes")
	}
	if bytes.Equal(plain, gen(t, "--rows", "500", "--seed", "8", "--malformed", "5")) {
		t.Fatal("another seed gave the same bytes")
	}
	var want bytes.Buffer
	if err := eligibility.Generate(&want, eligibility.GenerateOptions{Rows: 500, Seed: 7, Malformed: 5, OverlapPerMille: 20}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, want.Bytes()) {
		t.Fatal("output differs from eligibility.Generate with the same options")
	}
	if rows := strings.Count(string(plain), "\n") - 1; rows != 500 {
		t.Fatalf("%d data rows, want 500", rows)
	}

	t.Run("outputs", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		tests := []struct {
			name     string
			args     []string
			file     string // empty: stdout
			wantGzip bool
		}{
			{"stdout with --gzip", []string{"--gzip"}, "", true},
			{"file", []string{"-o", filepath.Join(dir, "e.csv")}, "e.csv", false},
			{"file ending in .gz", []string{"-o", filepath.Join(dir, "e.csv.gz")}, "e.csv.gz", true},
			{"file with --gzip", []string{"-o", filepath.Join(dir, "e.bin"), "--gzip"}, "e.bin", true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				got := gen(t, append([]string{"--rows", "500", "--seed", "7", "--malformed", "5"}, tc.args...)...)
				if tc.file != "" {
					if len(got) != 0 {
						t.Fatalf("wrote %d bytes to stdout as well as to the file", len(got))
					}
					var err error
					if got, err = os.ReadFile(filepath.Join(dir, tc.file)); err != nil {
						t.Fatal(err)
					}
				}
				isGzip := len(got) > 2 && got[0] == 0x1f && got[1] == 0x8b
				if isGzip != tc.wantGzip {
					t.Fatalf("gzip = %v, want %v", isGzip, tc.wantGzip)
				}
				if isGzip {
					got = gunzip(t, got)
				}
				if !bytes.Equal(got, plain) {
					t.Fatal("content differs from the plain stdout output")
				}
			})
		}
	})

	t.Run("gzip bytes are deterministic too", func(t *testing.T) {
		t.Parallel()
		a := gen(t, "--rows", "300", "--seed", "1", "--gzip")
		if !bytes.Equal(a, gen(t, "--rows", "300", "--seed", "1", "--gzip")) {
			t.Fatal("same seed gave different gzip bytes")
		}
	})

	t.Run("refuses to overwrite", func(t *testing.T) {
		t.Parallel()
		path := writeFile(t, "real-export.csv", []byte("precious\n"))
		if _, _, err := runOffline(t, "gen-eligibility", "--rows", "10", "--seed", "1", "-o", path); err == nil {
			t.Fatal("overwrote an existing file")
		}
		if b, _ := os.ReadFile(path); string(b) != "precious\n" {
			t.Fatalf("existing file changed to %q", b)
		}
	})
}

func TestGenEligibilityRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no rows", []string{"--seed", "1"}, "--rows and --seed are required"},
		{"no seed", []string{"--rows", "10"}, "--rows and --seed are required"},
		{"zero rows", []string{"--rows", "0", "--seed", "1"}, "--rows must be at least 1"},
		{"more damage than rows", []string{"--rows", "10", "--seed", "1", "--malformed", "11"}, "--malformed"},
		{"zero overlap", []string{"--rows", "10", "--seed", "1", "--overlap-per-mille", "0"}, "--overlap-per-mille"},
		{"overlap past saturation", []string{"--rows", "10", "--seed", "1", "--overlap-per-mille", "161"}, "--overlap-per-mille"},
		{"stray argument", []string{"--rows", "10", "--seed", "1", "out.csv"}, "unexpected argument"},
		{"unknown flag", []string{"--rows", "10", "--seed", "1", "--colour"}, "not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := runOffline(t, append([]string{"gen-eligibility"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
			if len(out) != 0 {
				t.Fatalf("wrote %d bytes despite the error", len(out))
			}
		})
	}
}

// TestHelpNeedsNoServer checks that -h prints a command's usage and succeeds without a
// secret, for online commands too: flags are parsed before connecting.
func TestHelpNeedsNoServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-h"}, "gen-eligibility"},
		{[]string{"gen-eligibility", "-h"}, "same flags always give the same bytes"},
		{[]string{"import", "-h"}, "run the same command\nagain"},
		{[]string{"issue", "-h"}, "--wait"},
		{[]string{"purge", "-h"}, "can never be exported again"},
		{[]string{"batches", "-h"}, "--incident"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			_, stderr, err := runOffline(t, tc.args...)
			if err != nil {
				t.Fatalf("help failed: %v", err)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Fatalf("usage lacks %q:\n%s", tc.want, stderr)
			}
		})
	}
}
