package ctl_test

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/eligibility"
	"github.com/idprotect/enroll/internal/server/servertest"
)

// listedBatch is one row of enrollctl batches.
type listedBatch struct {
	id, cohort, state, purged string
	issued, total             int64
}

func listBatches(t *testing.T, s *servertest.Server, incident string) map[string]listedBatch {
	t.Helper()
	out, stderr, err := run(t, s, "batches", "--incident", incident)
	if err != nil {
		t.Fatalf("batches: %v (%s)", err, stderr)
	}
	got := map[string]listedBatch{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) != 6 {
			t.Fatalf("batches line %q", l)
		}
		issued, total, _ := strings.Cut(f[3], "/")
		b := listedBatch{id: f[0], cohort: f[1], state: f[2], purged: f[5]}
		b.issued, _ = strconv.ParseInt(issued, 10, 64)
		b.total, _ = strconv.ParseInt(total, 10, 64)
		got[b.id] = b
	}
	return got
}

func totalIssued(t *testing.T, s *servertest.Server, incident string) int64 {
	t.Helper()
	out, _, err := run(t, s, "counts", "--incident", incident)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(out[strings.Index(out, "TOTAL"):])
	n, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		t.Fatalf("counts output %q", out)
	}
	return n
}

// TestIssueExportPurge imports a file, issues to every offered cohort and waits, then checks
// the codes against the people in the file: counts, batches and the exports all agree.
func TestIssueExportPurge(t *testing.T) {
	t.Parallel()
	s := start(t)
	const incident = "issue"
	newIncident(t, s, incident)
	// Many overlaps: people in both offered cohorts must get one code, not two.
	data := generated(t, eligibility.GenerateOptions{Rows: 4000, Seed: 9, OverlapPerMille: 100, Malformed: 10}, nil)
	want := expect(t, data)
	if _, stderr, err := run(t, s, "import", "--incident", incident, "--file", writeFile(t, "e.csv", data)); err != nil {
		t.Fatalf("import: %v (%s)", err, stderr)
	}

	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			code codes.Code // OK: a local flag error
			want string
		}{
			{"no incident", []string{"--cohort", eligibility.CohortCredit}, codes.OK, "--incident is required"},
			{"cohort not offered", []string{"--incident", incident, "--cohort", eligibility.CohortPrepaid}, codes.FailedPrecondition, "not offered"},
			{"unknown incident", []string{"--incident", "no-such-breach"}, codes.NotFound, "no-such-breach"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := run(t, s, append([]string{"issue"}, tc.args...)...)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
				}
				if tc.code != codes.OK && status.Code(err) != tc.code {
					t.Fatalf("err = %v, want %v mentioning %q", err, tc.code, tc.want)
				}
			})
		}
		if n := totalIssued(t, s, incident); n != 0 {
			t.Fatalf("refused requests issued %d codes", n)
		}
	})

	out, stderr, err := run(t, s, "issue", "--incident", incident, "--wait")
	if err != nil {
		t.Fatalf("issue: %v\n%s\n%s", err, out, stderr)
	}
	if !strings.Contains(out, "started 2 batch(es)") || strings.Count(out, " SUCCEEDED ") != 2 {
		t.Fatalf("issue output:\n%s", out)
	}
	for _, c := range []string{eligibility.CohortCredit, eligibility.CohortPostpaid} {
		if !strings.Contains(stderr, "issue "+c+": ") || !strings.Contains(stderr, "(100.0%)") {
			t.Errorf("no progress for %s on stderr:\n%s", c, stderr)
		}
	}
	if n := totalIssued(t, s, incident); n != want.offeredPeople {
		t.Fatalf("counts shows %d issued, want %d distinct people in offered cohorts", n, want.offeredPeople)
	}

	listed := listBatches(t, s, incident)
	ctx, a := admin(t, s)
	api, err := a.ListBatches(ctx, &enrollv1.ListBatchesRequest{Incident: "incidents/" + incident})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || len(api.GetBatches()) != 2 {
		t.Fatalf("batches lists %v, the API %v", listed, api.GetBatches())
	}
	seen := map[string]bool{}
	var sum int64
	for _, b := range api.GetBatches() {
		id := strings.TrimPrefix(b.GetName(), "batches/")
		l := listed[id]
		if l.state != "SUCCEEDED" || l.issued != b.GetIssued() || l.total != b.GetTotal() || l.purged != "no" ||
			l.cohort != incident+"/"+b.GetCohort()[strings.LastIndex(b.GetCohort(), "/")+1:] {
			t.Errorf("batches shows %+v for %v", l, b)
		}
		sum += b.GetIssued()
		recs := exportCSV(t, s, id)
		if int64(len(recs)) != b.GetIssued() {
			t.Errorf("export of %s has %d codes, the batch issued %d", id, len(recs), b.GetIssued())
		}
		for _, r := range recs {
			if seen[r[2]] || seen[r[0]] {
				t.Fatalf("code or reference exported twice: %v", r)
			}
			seen[r[2]], seen[r[0]] = true, true
		}
	}
	if sum != want.offeredPeople {
		t.Fatalf("batches issued %d codes in all, want %d", sum, want.offeredPeople)
	}

	t.Run("issuing again issues nothing", func(t *testing.T) {
		out, stderr, err := run(t, s, "issue", "--incident", incident, "--cohort", eligibility.CohortCredit, "--wait")
		if err != nil {
			t.Fatalf("issue: %v\n%s", err, stderr)
		}
		if !strings.Contains(out, " 0/0 ") || !strings.Contains(out, "SUCCEEDED") {
			t.Fatalf("second issue:\n%s", out)
		}
		if n := totalIssued(t, s, incident); n != want.offeredPeople {
			t.Fatalf("issued %d after the second run, want %d", n, want.offeredPeople)
		}
	})

	t.Run("purge ends exports", func(t *testing.T) {
		id := strings.TrimPrefix(api.GetBatches()[0].GetName(), "batches/")
		out, stderr, err := run(t, s, "purge", "--batch", id)
		if err != nil {
			t.Fatalf("purge: %v (%s)", err, stderr)
		}
		if !strings.Contains(stderr, "can never be produced again") || !strings.Contains(out, id) {
			t.Fatalf("purge output %q, stderr %q", out, stderr)
		}
		path := filepath.Join(t.TempDir(), "codes.csv")
		_, _, err = run(t, s, "export", "--batch", id, "-o", path)
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "purge") {
			t.Fatalf("export after purge: %v, want FailedPrecondition mentioning the purge", err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("failed export left a file behind: %v", err)
		}
		for bid, b := range listBatches(t, s, incident) {
			if wantPurged := map[bool]string{true: "yes", false: "no"}[bid == id]; b.purged != wantPurged {
				t.Errorf("batch %s export-purged %s, want %s", bid, b.purged, wantPurged)
			}
		}
	})
}

func exportCSV(t *testing.T, s *servertest.Server, batch string) [][]string {
	t.Helper()
	path := filepath.Join(t.TempDir(), batch+".csv")
	if _, stderr, err := run(t, s, "export", "--batch", batch, "-o", path); err != nil {
		t.Fatalf("export %s: %v (%s)", batch, err, stderr)
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
	return recs[1:]
}
