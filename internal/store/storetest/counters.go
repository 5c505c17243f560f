package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
)

func isKind(err, kind error) bool { return errors.Is(err, kind) }

// nonZeroSorted drops zero rows and orders by cohort, kind, state: the interface promises
// neither, so the comparison must not depend on them.
func nonZeroSorted(rows []enrollment.CounterRow) []enrollment.CounterRow {
	out := make([]enrollment.CounterRow, 0, len(rows))
	for _, r := range rows {
		if r.N != 0 {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b enrollment.CounterRow) int {
		return cmp.Or(cmp.Compare(a.CohortID, b.CohortID), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.State, b.State), cmp.Compare(a.Day, b.Day))
	})
	return out
}

// counterMap keys each non-zero row as cohort/kind/state for the state gauges, and
// cohort/kind/state@day for the daily rows.
func counterMap(rows []enrollment.CounterRow) map[string]int64 {
	out := map[string]int64{}
	for _, r := range rows {
		if r.N == 0 {
			continue
		}
		k := fmt.Sprintf("%s/%s/%s", r.CohortID, r.Kind, r.State)
		if r.Day != "" {
			k += "@" + r.Day
		}
		out[k] = r.N
	}
	return out
}

// countersOf fails t unless the counters of an incident (state gauges and daily rows) equal
// its recount exactly, and returns the state gauges keyed by cohort/kind/state.
func (f *Fixture) countersOf(incidentID, what string) map[string]int64 {
	f.T.Helper()
	counters, err := f.S.Counters(f.T.Context(), incidentID)
	must(f.T, err, "counters")
	recount, err := f.S.Recount(f.T.Context(), incidentID)
	must(f.T, err, "recount")
	c, r := nonZeroSorted(counters), nonZeroSorted(recount)
	if !reflect.DeepEqual(c, r) {
		f.T.Fatalf("%s: counters differ from the recount\ncounters %v\nrecount  %v", what, c, r)
	}
	gauges := c[:0:0]
	for _, row := range c {
		if row.IncidentID != incidentID || row.N < 0 {
			f.T.Fatalf("%s: counter row %+v", what, row)
		}
		if row.Day == "" {
			gauges = append(gauges, row)
		}
	}
	return counterMap(gauges)
}

// wantCountersEqualRecount checks the fixture incident's counters against a recount.
func (f *Fixture) wantCountersEqualRecount(what string) map[string]int64 {
	f.T.Helper()
	return f.countersOf(IncidentID, what)
}

// counters reads the fixture incident's counters (checked against a recount).
func (f *Fixture) counters() map[string]int64 {
	f.T.Helper()
	return f.countersOf(IncidentID, "counters")
}

// wantDelta fails t unless after = before + delta, key by key.
func wantDelta(t testing.TB, before, after, delta map[string]int64) {
	t.Helper()
	want := maps.Clone(before)
	for k, d := range delta {
		want[k] += d
		if want[k] == 0 {
			delete(want, k)
		}
	}
	if !reflect.DeepEqual(after, want) {
		t.Fatalf("counters = %v, want %v (before %v, delta %v)", after, want, before, delta)
	}
}

var counterTests = map[string]func(t *testing.T, open OpenFunc){
	"counters equal a recount through a mixed sequence, failures included": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.Subjects(CohortA, refs("A", 5)...)
		f.Subjects(CohortB, refs("B", 3)...)
		f.Import(IncidentID, Row(2, "SHARED-A", CohortA, "sam"), Row(3, "SHARED-B", CohortB, "sam"))
		if got := f.counters(); len(got) != 0 {
			t.Fatalf("counters before issuance = %v, want none", got)
		}
		f.Issue("batch-a", CohortA)
		f.Issue("batch-b", CohortB)
		codes := f.Codes("batch-a")
		maps.Copy(codes, f.Codes("batch-b"))
		wantDelta(t, map[string]int64{}, f.counters(), map[string]int64{"cohort-a/code/ISSUED": 6, "cohort-b/code/ISSUED": 3})

		ctx := t.Context()
		redeem := func(ref string) func() error {
			return func() error {
				_, _, err := f.S.RedeemCode(ctx, [][]byte{codes[ref]}, "enr-"+ref, RedeemTime)
				return err
			}
		}
		activate := func(id, partner, member string) func() error {
			return func() error {
				_, err := f.S.ActivateEnrollment(ctx, id, partner, member, ActivateTime)
				return err
			}
		}
		cancel := func(id string) func() error {
			return func() error {
				_, err := f.S.CancelEnrollment(ctx, id, PartnerID, "asked", ActivateTime.Add(24*time.Hour))
				return err
			}
		}
		revoke := func(ref string) func() error {
			return func() error {
				_, err := f.S.RevokeCode(ctx, IncidentID, ref, "returned", RedeemTime)
				return err
			}
		}
		redeemed := map[string]int64{"code/ISSUED": -1, "code/REDEEMED": 1, "enrollment/PENDING": 1}
		steps := []struct {
			name  string
			do    func() error
			kind  error // nil: must succeed
			delta map[string]int64
		}{
			{"redeem A-01", redeem("A-01"), nil, in(CohortA, redeemed)},
			{"redeem A-02", redeem("A-02"), nil, in(CohortA, redeemed)},
			{"redeem A-03", redeem("A-03"), nil, in(CohortA, redeemed)},
			{"redeem B-01", redeem("B-01"), nil, in(CohortB, redeemed)},
			{"redeem A-01 again", redeem("A-01"), enrollment.ErrAlreadyExists, nil},
			{"redeem unknown code", func() error {
				_, _, err := f.S.RedeemCode(ctx, [][]byte{unknownCode}, "enr-x", RedeemTime)
				return err
			}, enrollment.ErrNotFound, nil},
			{"redeem A-05 at redeem-by", func() error {
				_, _, err := f.S.RedeemCode(ctx, [][]byte{codes["A-05"]}, "enr-late", f.Incident.RedeemBy(Base))
				return err
			}, enrollment.ErrFailedPrecondition, nil},
			{"revoke A-04", revoke("A-04"), nil, in(CohortA, map[string]int64{"code/ISSUED": -1, "code/REVOKED": 1})},
			{"revoke A-04 again", revoke("A-04"), errAny, nil},
			{"redeem revoked A-04", redeem("A-04"), enrollment.ErrFailedPrecondition, nil},
			{"revoke redeemed A-01", revoke("A-01"), enrollment.ErrFailedPrecondition, nil},
			{"activate enr-A-01", activate("enr-A-01", PartnerID, "M-1"), nil, in(CohortA, map[string]int64{"enrollment/PENDING": -1, "enrollment/ACTIVE": 1})},
			{"activate enr-A-02", activate("enr-A-02", PartnerID, "M-2"), nil, in(CohortA, map[string]int64{"enrollment/PENDING": -1, "enrollment/ACTIVE": 1})},
			{"activate enr-A-03 with a bound member id", activate("enr-A-03", PartnerID, "M-1"), enrollment.ErrAlreadyExists, nil},
			{"activate enr-A-01 again", activate("enr-A-01", PartnerID, "M-9"), enrollment.ErrFailedPrecondition, nil},
			{"activate enr-A-03 as another partner", activate("enr-A-03", PartnerB, "M-3"), enrollment.ErrNotFound, nil},
			{"cancel active enr-A-02", cancel("enr-A-02"), nil, in(CohortA, map[string]int64{"enrollment/ACTIVE": -1, "enrollment/CANCELLED": 1})},
			{"cancel pending enr-B-01", cancel("enr-B-01"), nil, in(CohortB, map[string]int64{"enrollment/PENDING": -1, "enrollment/CANCELLED": 1})},
			{"cancel enr-A-02 again", cancel("enr-A-02"), enrollment.ErrFailedPrecondition, nil},
		}
		for _, st := range steps {
			before := f.counters()
			err := st.do()
			switch {
			case st.kind == nil && err != nil:
				t.Fatalf("%s: %v", st.name, err)
			case st.kind == errAny && err == nil, st.kind != nil && st.kind != errAny && !isKind(err, st.kind):
				t.Fatalf("%s: error = %v, want %v", st.name, err, st.kind)
			}
			wantDelta(t, before, f.wantCountersEqualRecount(st.name), st.delta)
		}
		wantDelta(t, map[string]int64{}, f.counters(), map[string]int64{
			"cohort-a/code/ISSUED": 2, "cohort-a/code/REDEEMED": 3, "cohort-a/code/REVOKED": 1,
			"cohort-a/enrollment/PENDING": 1, "cohort-a/enrollment/ACTIVE": 1, "cohort-a/enrollment/CANCELLED": 1,
			"cohort-b/code/ISSUED": 2, "cohort-b/code/REDEEMED": 1, "cohort-b/enrollment/CANCELLED": 1,
		})

		// Counters are per incident: another incident's issuance does not show here.
		f.AddPartner(PartnerB)
		f.AddIncident(IncidentB, PartnerB)
		f.AddCohort(IncidentB, CohortA, true)
		f.Import(IncidentB, Row(2, "X-01", CohortA, "xena"))
		before := f.counters()
		f.IssueIn(IncidentB, "batch-x", CohortA)
		wantDelta(t, before, f.counters(), nil)
		wantDelta(t, map[string]int64{}, f.countersOf(IncidentB, "incident b"), map[string]int64{"cohort-a/code/ISSUED": 1})
	},
}

// errAny marks a step that must fail with some error (the contract names no kind).
var errAny = errors.New("any error")

// in prefixes each kind/state key of delta with a cohort.
func in(cohortID string, delta map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(delta))
	for k, v := range delta {
		out[cohortID+"/"+k] = v
	}
	return out
}
