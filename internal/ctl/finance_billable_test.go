package ctl_test

import (
	"cmp"
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// TestBillableMonthEdges makes enrollments at the edges of calendar months through the API,
// moving the fake clock, and checks enrollctl billable month by month: the count, and the
// CSV behind it row for row.
func TestBillableMonthEdges(t *testing.T) {
	t.Parallel()
	for _, engine := range gormtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Parallel()
			b := newBooks(t, engine.Config(t), date(2024, 2, 1, 0, 0, 0), "alpha", "beta")
			b.issue("alpha", "leap", "mid", "pending", "last-second", "cancel-first")
			b.issue("beta", "other")
			// In clock order: the fake clock only moves forward.
			names := map[string]string{}
			// 24 months from 2024-02-29 is clamped to 2026-02-28.
			names["leap"] = b.enroll("alpha", "leap", "M-LEAP", date(2024, 2, 29, 12, 0, 0))
			// Coverage ends 2026-06-15 10:00, mid-month.
			names["mid"] = b.enroll("alpha", "mid", "M-MID", date(2024, 6, 15, 10, 0, 0))
			names["pending"] = b.redeem("pending", date(2025, 12, 1, 9, 0, 0))
			names["last-second"] = b.enroll("alpha", "last-second", "M-LAST", date(2026, 1, 31, 23, 59, 59))
			names["other"] = b.enroll("beta", "other", "B-OTHER", date(2026, 2, 5, 9, 0, 0))
			names["cancel-first"] = b.enroll("alpha", "cancel-first", "M-CANCEL", date(2026, 2, 10, 10, 0, 0))
			b.cancel("alpha", names["cancel-first"], date(2026, 3, 1, 0, 0, 0))
			b.s.Clock.Set(date(2026, 8, 1, 0, 0, 0))

			tests := []struct {
				name, partner, month string
				want                 []string
			}{
				{"nothing before the first activation", "alpha", "2024-01", nil},
				{"activated on Feb 29", "alpha", "2024-02", []string{"leap"}},
				{"pending is never billable", "alpha", "2025-12", []string{"leap", "mid"}},
				{"activated 23:59:59 on the last day bills that month", "alpha", "2026-01", []string{"leap", "mid", "last-second"}},
				{"cancelled 00:00:00 on the first bills the month before; clamped coverage bills Feb", "alpha", "2026-02",
					[]string{"leap", "mid", "last-second", "cancel-first"}},
				{"cancelled 00:00:00 on the first does not bill that month; clamped coverage ended", "alpha", "2026-03", []string{"mid", "last-second"}},
				{"coverage ending mid-month bills that month", "alpha", "2026-06", []string{"mid", "last-second"}},
				{"coverage ended mid-month does not bill the next", "alpha", "2026-07", []string{"last-second"}},
				{"another partner's enrollment is not counted for alpha", "alpha", "2026-05", []string{"mid", "last-second"}},
				{"another partner's enrollment bills its own partner", "beta", "2026-02", []string{"other"}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					path := filepath.Join(t.TempDir(), "billable.csv")
					out, stderr, err := run(t, b.s, "billable", "--partner", tc.partner, "--month", tc.month, "-o", path)
					if err != nil {
						t.Fatalf("billable: %v\n%s", err, stderr)
					}
					n := countLine(t, out, "billable member-months")
					rows := readCSV(t, path)
					if n != int64(len(rows)) {
						t.Fatalf("count %d but the CSV has %d rows", n, len(rows))
					}
					label := map[string]string{}
					for k, v := range names {
						label[v] = k
					}
					var got []string
					for _, r := range rows {
						got = append(got, cmp.Or(label[r["enrollment"]], r["enrollment"]))
					}
					want := slices.Clone(tc.want)
					slices.Sort(got)
					slices.Sort(want)
					if !slices.Equal(got, want) {
						t.Fatalf("billable in %s: %v, want %v", tc.month, got, want)
					}
				})
			}

			t.Run("the CSV says when coverage ended", func(t *testing.T) {
				t.Parallel()
				path := filepath.Join(t.TempDir(), "feb.csv")
				if _, stderr, err := run(t, b.s, "billable", "--partner", "alpha", "--month", "2026-02", "-o", path); err != nil {
					t.Fatalf("billable: %v\n%s", err, stderr)
				}
				want := map[string][2]string{
					names["leap"]:         {"2024-02-29T12:00:00Z", "2026-02-28T12:00:00Z"},
					names["last-second"]:  {"2026-01-31T23:59:59Z", "2028-01-31T23:59:59Z"},
					names["cancel-first"]: {"2026-02-10T10:00:00Z", "2026-03-01T00:00:00Z"},
				}
				for _, r := range readCSV(t, path) {
					if w, ok := want[r["enrollment"]]; ok && (r["activate_time"] != w[0] || r["end_time"] != w[1]) {
						t.Errorf("%s: activated %s ending %s, want %s ending %s", r["enrollment"], r["activate_time"], r["end_time"], w[0], w[1])
					}
				}
			})
		})
	}
}

// countLine returns the number after "label:" in a command's output.
func countLine(t *testing.T, out, label string) int64 {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, label+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("%q in output:\n%s", l, out)
			}
			return n
		}
	}
	t.Fatalf("no %q in output:\n%s", label, out)
	return 0
}

// readCSV reads a CSV with a header into one map per row.
func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("read %s: %v (%d records)", path, err, len(recs))
	}
	out := make([]map[string]string, 0, len(recs)-1)
	for _, rec := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = rec[i]
		}
		out = append(out, m)
	}
	return out
}
