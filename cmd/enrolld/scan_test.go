package main

// Scanners for what must never be at rest or in a log: the deployment's whole database as
// bytes, and finders for enrollment codes (every form the API accepts) and other secrets.

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/idprotect/enroll/internal/store/gormstore"
)

// dbBlob returns everything the deployment's database holds. SQLite: every file in the
// database's directory (main file, -wal, -shm), byte for byte, free pages included.
// PostgreSQL: every row of every table of the deployment's schema rendered as text, followed
// by every bytea value in it decoded from hex. Call it with the server stopped, so nothing
// is still in flight.
func (d *daemon) dbBlob() []byte {
	t := d.t
	t.Helper()
	switch d.db.Driver {
	case gormstore.DriverSQLite:
		dir := filepath.Dir(d.db.DSN)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var all []byte
		for _, de := range entries {
			if de.IsDir() {
				continue
			}
			raw, err := os.ReadFile(filepath.Join(dir, de.Name()))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, raw...)
		}
		return all
	case gormstore.DriverPostgres:
		return postgresBlob(t, d.db.DSN)
	}
	t.Fatalf("no database scan for driver %s", d.db.Driver)
	return nil
}

// byteaHex matches a bytea value in row text: \x (its backslash doubled inside a record
// literal) and pairs of hex digits.
var byteaHex = regexp.MustCompile(`\\+x((?:[0-9a-f]{2})+)`)

func postgresBlob(t *testing.T, dsn string) []byte {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	var tables []string
	if err := db.Raw("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'").
		Scan(&tables).Error; err != nil {
		t.Fatal(err)
	}
	if len(tables) < 10 {
		t.Fatalf("found tables %v in the deployment's schema; want the migrated schema", tables)
	}
	var text bytes.Buffer
	for _, table := range tables {
		rows, err := db.Raw(`SELECT t::text FROM "` + table + `" AS t`).Rows()
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			text.WriteString(s)
			text.WriteByte('\n')
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	all := text.Bytes()
	for _, m := range byteaHex.FindAllSubmatch(text.Bytes(), -1) {
		raw, err := hex.DecodeString(string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, '\n')
		all = append(all, raw...)
	}
	return all
}

// codeFinder finds enrollment codes in arbitrary bytes, in display form
// (XXXX-XXXX-XXXX-XXXX) or compact form (16 symbols), in any letter case.
type codeFinder struct {
	display map[string]bool
	compact map[string]string // compact → display
}

func newCodeFinder(codes []string) *codeFinder {
	f := &codeFinder{display: make(map[string]bool, len(codes)), compact: make(map[string]string, len(codes))}
	for _, c := range codes {
		f.display[c] = true
		f.compact[strings.ReplaceAll(c, "-", "")] = c
	}
	return f
}

// find returns the codes present in data, in display form. It looks at every window of 16
// symbols and of 19 symbols-or-hyphens, so it finds a code wherever it sits.
func (f *codeFinder) find(data []byte) map[string]bool {
	up := make([]byte, len(data))
	for i, b := range data {
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		up[i] = b
	}
	isSym := func(b byte) bool { return '0' <= b && b <= '9' || 'A' <= b && b <= 'Z' }
	found := map[string]bool{}
	for i := 0; i < len(up); {
		if !isSym(up[i]) && up[i] != '-' {
			i++
			continue
		}
		j := i
		for j < len(up) && (isSym(up[j]) || up[j] == '-') {
			j++
		}
		run := up[i:j]
		for k := 0; k+19 <= len(run); k++ {
			if run[k+4] == '-' && f.display[string(run[k:k+19])] {
				found[string(run[k:k+19])] = true
			}
		}
		for k := 0; k+16 <= len(run); k++ {
			if c, ok := f.compact[string(run[k:k+16])]; ok {
				found[c] = true
			}
		}
		i = j
	}
	return found
}

// checkCodeFinder is the positive control of a code scan: f must find every code of codes
// when they are hidden in binary noise, alternately in display form and lower-case
// compact form.
func checkCodeFinder(t testing.TB, f *codeFinder, codes []string) {
	t.Helper()
	var buf bytes.Buffer
	for i, c := range codes {
		buf.Write([]byte{0, 0xff, byte(i), '"'})
		if i%2 == 0 {
			buf.WriteString(c)
		} else {
			buf.WriteString(strings.ToLower(strings.ReplaceAll(c, "-", "")))
		}
	}
	if got := len(f.find(buf.Bytes())); got != len(codes) {
		t.Fatalf("control: the code finder found %d of %d codes planted in a buffer; the scan is blind", got, len(codes))
	}
}

// secret is a value that must not be stored or logged, named for the failure message.
type secret struct{ name, value string }

// findSecrets returns the names of the secrets present in data.
func findSecrets(data []byte, secrets []secret) []string {
	var out []string
	for _, s := range secrets {
		if bytes.Contains(data, []byte(s.value)) {
			out = append(out, s.name+" "+s.value)
		}
	}
	return out
}
