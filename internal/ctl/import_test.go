package ctl_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/idprotect/enroll/internal/eligibility"
	"github.com/idprotect/enroll/internal/server/servertest"
)

// structuralDamage breaks the CSV structure of lines, which the local reader (not the
// server) must reject and report with these line numbers.
func structuralDamage(lines ...int) map[int]string {
	kinds := []string{
		"APP-X%d,credit-applicants", // too few fields
		"APP-X%d,credit-applicants,Smith,1980-01-01,123-45-6789,,12345,extra", // too many
		`PP-X%d,postpaid"customers,Jones,1980-01-01,123-45-6789,,12345`,       // bare quote
	}
	m := map[int]string{}
	for i, l := range lines {
		m[l] = fmt.Sprintf(kinds[i%len(kinds)], i)
	}
	return m
}

func importFile(t *testing.T, s *servertest.Server, incident, path string, extra ...string) (summary, string, error) {
	t.Helper()
	out, stderr, err := run(t, s, append([]string{"import", "--incident", incident, "--file", path}, extra...)...)
	return parseSummary(t, out), stderr, err
}

func checkSummary(t *testing.T, got summary, want expectation) {
	t.Helper()
	v := got.values
	if sum := v["created"] + v["memberships added"] + v["unchanged"] + v["errors"]; sum != v["rows read"] {
		t.Errorf("created+memberships+unchanged+errors = %d, rows read %d", sum, v["rows read"])
	}
	for k, w := range map[string]int64{
		"rows read": want.rows, "created": want.created, "memberships added": want.memberships,
		"unchanged": want.unchanged, "errors": int64(len(want.errLines)),
	} {
		if v[k] != w {
			t.Errorf("%s = %d, want %d", k, v[k], w)
		}
	}
	if wl := want.errLines[:min(20, len(want.errLines))]; !slices.Equal(got.errLines, wl) {
		t.Errorf("error lines listed %v, want %v", got.errLines, wl)
	}
	if got.stopped {
		t.Error("reported a stop")
	}
}

func TestImport(t *testing.T) {
	t.Parallel()
	s := start(t)
	data := generated(t, eligibility.GenerateOptions{Rows: 20000, Seed: 42, Malformed: 30}, structuralDamage(101, 7002, 15003))
	want := expect(t, data)
	// The file must exercise both kinds of rejection and the overlap between cohorts.
	if len(want.errLines) < 10 || !slices.Contains(want.errLines, 101) || want.memberships == 0 {
		t.Fatalf("test file too tame: %+v", want)
	}
	path := writeFile(t, "eligibility.csv", data)
	newIncident(t, s, "plain")

	got, stderr, err := importFile(t, s, "plain", path)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	checkSummary(t, got, want)
	if !strings.Contains(stderr, "import: 20000 rows in ") {
		t.Errorf("no final progress line on stderr:\n%s", stderr)
	}
	if !strings.Contains(got.out, "line 101: has 2 fields, the header has 7") {
		t.Errorf("the reader's rejection of line 101 is not reported:\n%s", got.out)
	}

	// The two runs below use separate incidents, so they may overlap.
	t.Run("rerun changes nothing", func(t *testing.T) {
		t.Parallel()
		again, stderr, err := importFile(t, s, "plain", path)
		if err != nil {
			t.Fatalf("rerun: %v\n%s", err, stderr)
		}
		valid := want.rows - int64(len(want.errLines))
		checkSummary(t, again, expectation{rows: want.rows, unchanged: valid, errLines: want.errLines})
	})

	t.Run("gzip imports the same", func(t *testing.T) {
		t.Parallel()
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, _ = zw.Write(data)
		_ = zw.Close()
		newIncident(t, s, "gzipped")
		got, stderr, err := importFile(t, s, "gzipped", writeFile(t, "eligibility.csv.gz", gz.Bytes()))
		if err != nil {
			t.Fatalf("import: %v\n%s", err, stderr)
		}
		checkSummary(t, got, want)
	})
}

// TestImportStopsAtMaxErrors checks both ways an import stops: the local reader exceeding
// --max-errors (it stops sending) and the server exceeding it (it ends the stream). Either
// way the exit status is non-zero, and running the same command again completes the import.
func TestImportStopsAtMaxErrors(t *testing.T) {
	t.Parallel()
	s := start(t)
	tests := []struct {
		name    string
		data    []byte
		notSeen int64 // a bad line after the stop, which must not be reported
		// read is the rows the summary must count: up to the second bad row when the
		// reader stops, up to and including it when the server does (the rest of the
		// message that carried it is neither read nor imported).
		read int64
	}{
		{"broken CSV structure", generated(t, eligibility.GenerateOptions{Rows: 3000, Seed: 3}, structuralDamage(500, 1500, 2500)), 2500, 1499},
		// Bad data on lines 502, 1502, 2502...: the second one stops the server inside the
		// first chunk.
		{"bad data", generated(t, eligibility.GenerateOptions{Rows: 12000, Seed: 4, Malformed: 12}, nil), 11502, 1501},
	}
	// Errors only the store finds (unknown cohort, lines 100 and 200, in the first 5,000-row
	// chunk) are counted while the server already reads the next chunk: the stop is the
	// second of them, so the bad row at line 7000 is neither reported nor anything from the
	// second chunk imported (the first chunk, written whole, is; its rows are counted).
	mixed := map[int]string{
		100: "APP-U1,no-such-cohort,Smith,1980-01-01,123-45-6789,,12345", 200: "APP-U2,no-such-cohort,Jones,1981-02-02,123-45-6780,,12345",
		7000: "APP-B1,credit-applicants,,1980-01-01,123-45-6789,,12345", 7100: "APP-B2,credit-applicants,,1981-02-02,123-45-6780,,12345",
		9000: "APP-B3,credit-applicants,,1982-03-03,123-45-6781,,12345",
	}
	tests = append(tests, struct {
		name    string
		data    []byte
		notSeen int64
		read    int64
	}{"store errors then bad data", generated(t, eligibility.GenerateOptions{Rows: 12000, Seed: 5}, mixed), 7000, 6998})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			incident := fmt.Sprintf("stop-%d", i)
			newIncident(t, s, incident)
			want := expect(t, tc.data)
			if len(want.errLines) < 3 || !slices.Contains(want.errLines, tc.notSeen) {
				t.Fatalf("test file has errors on lines %v, want several including %d", want.errLines, tc.notSeen)
			}
			path := writeFile(t, "eligibility.csv", tc.data)
			got, stderr, err := importFile(t, s, incident, path, "--max-errors", "1")
			if err == nil || !strings.Contains(err.Error(), "stopped early") {
				t.Fatalf("err = %v, want a stop\n%s\n%s", err, got.out, stderr)
			}
			if !got.stopped || got.values["errors"] < 2 {
				t.Fatalf("summary does not report the stop:\n%s", got.out)
			}
			v := got.values
			if slices.Contains(got.errLines, tc.notSeen) || v["rows read"] != tc.read {
				t.Fatalf("rows read = %d, want %d, and no error after the stop:\n%s", v["rows read"], tc.read, got.out)
			}
			// Every row read is in exactly one line of the summary.
			if sum := v["created"] + v["memberships added"] + v["unchanged"] + v["errors"] + v["not imported"]; sum != v["rows read"] {
				t.Errorf("summary lines add up to %d, rows read %d:\n%s", sum, v["rows read"], got.out)
			}

			again, stderr, err := importFile(t, s, incident, path)
			if err != nil {
				t.Fatalf("rerun: %v\n%s", err, stderr)
			}
			if again.stopped || again.values["errors"] != int64(len(want.errLines)) || again.values["rows read"] != want.rows {
				t.Fatalf("rerun did not complete: %v\n%s", again.values, again.out)
			}
			r, valid := again.values, want.rows-int64(len(want.errLines))
			if created := v["created"] + r["created"]; created != want.created {
				t.Errorf("created %d + %d over both runs, want %d people", v["created"], r["created"], want.created)
			}
			if done := r["created"] + r["memberships added"] + r["unchanged"]; done != valid {
				t.Errorf("rerun accounted for %d valid rows, want %d", done, valid)
			}
		})
	}
}
