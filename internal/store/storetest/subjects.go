package storetest

import (
	"reflect"
	"testing"

	"github.com/idprotect/enroll/internal/enrollment"
)

// wantImport fails t unless the counts of res match.
func wantImport(t testing.TB, what string, res *enrollment.ImportResult, created, memberships, unchanged int64) {
	t.Helper()
	if res.Created != created || res.MembershipsAdded != memberships || res.Unchanged != unchanged {
		t.Fatalf("%s: created %d, memberships added %d, unchanged %d; want %d, %d, %d (errors %+v)",
			what, res.Created, res.MembershipsAdded, res.Unchanged, created, memberships, unchanged, res.Errors)
	}
}

// wantErrorLines fails t unless res rejected exactly the given lines, each with a reason.
func wantErrorLines(t testing.TB, what string, res *enrollment.ImportResult, lines ...int64) {
	t.Helper()
	var got []int64
	for _, e := range res.Errors {
		got = append(got, e.Line)
		if e.Reason == "" {
			t.Errorf("%s: line %d rejected without a reason", what, e.Line)
		}
	}
	if !reflect.DeepEqual(got, lines) {
		t.Fatalf("%s: rejected lines %v, want %v (%+v)", what, got, lines, res.Errors)
	}
}

// wantSubjectCount fails t unless the cohort's SubjectCount is n.
func (f *Fixture) wantSubjectCount(cohortID string, n int64) {
	f.T.Helper()
	c, err := f.S.GetCohort(f.T.Context(), IncidentID, cohortID)
	must(f.T, err, "get cohort")
	if c.SubjectCount != n {
		f.T.Fatalf("cohort %s SubjectCount = %d, want %d", cohortID, c.SubjectCount, n)
	}
}

func importRows(t *testing.T, f *Fixture, rows ...enrollment.SubjectRow) *enrollment.ImportResult {
	t.Helper()
	res, err := f.S.ImportSubjects(t.Context(), IncidentID, rows)
	must(t, err, "import subjects")
	return res
}

var importTests = map[string]func(t *testing.T, open OpenFunc){
	"new rows are created and counted": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		res := importRows(t, f, Row(2, "REF-1", CohortA, "ann"), Row(3, "REF-2", CohortA, "bob"), Row(4, "REF-3", CohortB, "cy"))
		wantImport(t, "first import", res, 3, 0, 0)
		wantErrorLines(t, "first import", res)
		f.wantSubjectCount(CohortA, 2)
		f.wantSubjectCount(CohortB, 1)
		f.wantSubjectCount(CohortNoOffer, 0)
	},
	"rerun of the same rows changes nothing": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		rows := []enrollment.SubjectRow{Row(2, "REF-1", CohortA, "ann"), Row(3, "REF-2", CohortA, "bob"), Row(4, "REF-3", CohortB, "cy")}
		wantImport(t, "first import", importRows(t, f, rows...), 3, 0, 0)
		for range 2 {
			res := importRows(t, f, rows...)
			wantImport(t, "rerun", res, 0, 0, int64(len(rows)))
			wantErrorLines(t, "rerun", res)
		}
		f.wantSubjectCount(CohortA, 2)
		f.wantSubjectCount(CohortB, 1)
		// Nothing duplicated: issuing cohort A gives exactly its two people a code.
		b := f.Issue("batch-a", CohortA)
		if b.Total != 2 || b.Issued != 2 {
			t.Fatalf("batch after reruns: total %d issued %d, want 2 and 2", b.Total, b.Issued)
		}
	},
	"known external_ref with different identity is rejected by line": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		importRows(t, f, Row(2, "REF-1", CohortA, "ann"))
		res := importRows(t, f, Row(7, "REF-2", CohortA, "bob"), Row(8, "REF-1", CohortA, "mallory"), Row(9, "REF-3", CohortA, "cy"))
		wantErrorLines(t, "conflicting identity", res, 8)
		wantImport(t, "conflicting identity", res, 2, 0, 0)
		f.wantSubjectCount(CohortA, 3)
		// The same conflict inside one call: the second row for a new ref is rejected too.
		res = importRows(t, f, Row(10, "REF-9", CohortB, "dee"), Row(11, "REF-9", CohortB, "eve"))
		wantErrorLines(t, "conflict within a call", res, 11)
		wantImport(t, "conflict within a call", res, 1, 0, 0)
		// The rejected person's identity did not land: importing "mallory" under a new ref
		// creates a new subject rather than matching REF-1.
		res = importRows(t, f, Row(12, "REF-10", CohortB, "mallory"))
		wantImport(t, "rejected identity under a fresh ref", res, 1, 0, 0)
	},
	"unknown cohort is rejected by line": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		res := importRows(t, f, Row(2, "REF-1", CohortA, "ann"), Row(3, "REF-2", "cohort-nope", "bob"), Row(4, "REF-3", CohortA, "cy"))
		wantErrorLines(t, "unknown cohort", res, 3)
		wantImport(t, "unknown cohort", res, 2, 0, 0)
		f.wantSubjectCount(CohortA, 2)
	},
	"unknown incident is not found": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		_, err := f.S.ImportSubjects(t.Context(), "incident-nope", []enrollment.SubjectRow{Row(2, "REF-1", CohortA, "ann")})
		wantKind(t, err, enrollment.ErrNotFound, "import into unknown incident")
	},
	"same person under another ref in another cohort is one subject": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		wantImport(t, "cohort A", importRows(t, f, Row(2, "APP-1", CohortA, "ann"), Row(3, "APP-2", CohortA, "bob")), 2, 0, 0)
		res := importRows(t, f, Row(2, "POST-1", CohortB, "ann"))
		wantImport(t, "ann again in cohort B", res, 0, 1, 0)
		wantErrorLines(t, "ann again in cohort B", res)
		f.wantSubjectCount(CohortA, 2)
		f.wantSubjectCount(CohortB, 1)
		wantImport(t, "rerun of cohort B", importRows(t, f, Row(2, "POST-1", CohortB, "ann")), 0, 0, 1)
		f.wantSubjectCount(CohortB, 1)

		// One subject: issuing A covers ann, so B has nobody left without a code, and ann's
		// code lists both cohorts.
		f.Issue("batch-a", CohortA)
		if b := f.StartBatch("batch-b", CohortB); b.Total != 0 {
			t.Fatalf("cohort B batch total = %d, want 0: ann already has a code", b.Total)
		}
		v, err := f.S.LookupCode(t.Context(), [][]byte{f.Codes("batch-a")["APP-1"]})
		must(t, err, "lookup ann's code")
		if got := ids(v.Cohorts, func(c enrollment.Cohort) string { return c.ID }); got != "[cohort-a cohort-b]" {
			t.Fatalf("ann's cohorts = %s, want [cohort-a cohort-b]", got)
		}
	},
	"same person twice in one call is one subject with two memberships": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		res := importRows(t, f, Row(2, "APP-1", CohortA, "ann"), Row(3, "POST-1", CohortB, "ann"), Row(4, "POST-2", CohortB, "bob"))
		wantImport(t, "mixed call", res, 2, 1, 0)
		f.wantSubjectCount(CohortA, 1)
		f.wantSubjectCount(CohortB, 2)
		b := f.Issue("batch-b", CohortB)
		if b.Total != 2 {
			t.Fatalf("cohort B batch total = %d, want 2", b.Total)
		}
		if b := f.StartBatch("batch-a", CohortA); b.Total != 0 {
			t.Fatalf("cohort A batch total = %d, want 0", b.Total)
		}
	},
}
