package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
)

// issueDue issues every member of a cohort of the fixture's incident at Base in a batch whose
// codes are due at redeemBy, and returns the codes by external ref.
func (f *Fixture) issueDue(batchID, cohortID string, redeemBy time.Time) map[string][]byte {
	f.T.Helper()
	b := &enrollment.Batch{
		ID: batchID, IncidentID: IncidentID, CohortID: cohortID, State: enrollment.BatchRunning,
		RedeemBy: redeemBy, Creator: "storetest", CreateTime: Base, UpdateTime: Base,
		WrappedSecret: []byte("wrapped secret of " + batchID), MasterKeyID: "master-1", LookupKeyID: MintKeyID,
	}
	must(f.T, f.S.CreateBatch(f.T.Context(), b), "create batch "+batchID)
	f.Drain(batchID, 100, Mint)
	must(f.T, f.S.FinishBatch(f.T.Context(), batchID, enrollment.BatchSucceeded, "", Base), "finish batch")
	return f.Codes(batchID)
}

// sweeps runs sweep until it reports nothing and returns what each call reported, failing t
// if a call exceeds limit.
func (f *Fixture) sweeps(what string, limit int, sweep func(limit int) (int, error)) []int {
	f.T.Helper()
	var out []int
	for range 100 {
		n, err := sweep(limit)
		must(f.T, err, what)
		if n < 0 || n > limit {
			f.T.Fatalf("%s with limit %d reported %d", what, limit, n)
		}
		out = append(out, n)
		if n == 0 {
			return out
		}
	}
	f.T.Fatalf("%s never reports completion: %v", what, out)
	return nil
}

// wantStates fails t unless each code (by ref) is stored in its state.
func (f *Fixture) wantStates(codes map[string][]byte, want map[string]enrollment.CodeState) {
	f.T.Helper()
	for ref, state := range want {
		if got := f.lookup(codes[ref]).Code.State; got != state {
			f.T.Fatalf("code of %s is %s, want %s", ref, got, state)
		}
	}
}

var sweepTests = map[string]func(t *testing.T, open OpenFunc){
	"sweep codes expires exactly the codes due, in batches, once": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		ctx := t.Context()
		due := f.Incident.RedeemBy(Base)
		f.Subjects(CohortA, refs("A", 5)...)
		f.Subjects(CohortB, refs("B", 3)...)
		codes := f.issueDue("batch-a", CohortA, due)
		for ref, c := range f.issueDue("batch-b", CohortB, due.Add(24*time.Hour)) {
			codes[ref] = c
		}
		f.AddPartner(PartnerB)
		f.AddIncident(IncidentB, PartnerB)
		f.AddCohort(IncidentB, CohortA, true)
		f.Import(IncidentB, Row(2, "X-01", CohortA, "xena"), Row(3, "X-02", CohortA, "xavier"))
		f.IssueIn(IncidentB, "batch-x", CohortA) // due with batch-a
		f.Redeem(codes["A-01"], "enr-A-01", RedeemTime)
		_, err := f.S.RevokeCode(ctx, IncidentID, "A-02", "returned", RedeemTime)
		must(t, err, "revoke")
		feedA, feedB := len(f.feed(PartnerID, 100)), len(f.feed(PartnerB, 100))
		beforeA, beforeB := f.counters(), f.countersOf(IncidentB, "incident b")
		sweepAt := func(now time.Time) func(int) (int, error) {
			return func(limit int) (int, error) { return f.S.SweepCodes(ctx, now, limit) }
		}

		if got := f.sweeps("sweep a second early", 100, sweepAt(due.Add(-time.Second))); !slices.Equal(got, []int{0}) {
			t.Fatalf("sweeps a second before redeem-by expired %v, want none", got)
		}
		wantDelta(t, beforeA, f.wantCountersEqualRecount("after the early sweep"), nil)
		// At redeem-by: A-03..A-05 and, two per call.
		if got := f.sweeps("sweep at redeem-by", 2, sweepAt(due)); !slices.Equal(got, []int{2, 2, 1, 0}) {
			t.Fatalf("sweeps at redeem-by with limit 2 expired %v, want [2 2 1 0]", got)
		}
		wantDelta(t, beforeA, f.wantCountersEqualRecount("after the sweep"), map[string]int64{"cohort-a/code/ISSUED": -3, "cohort-a/code/EXPIRED": 3})
		wantDelta(t, beforeB, f.countersOf(IncidentB, "incident b after the sweep"), map[string]int64{"cohort-a/code/ISSUED": -2, "cohort-a/code/EXPIRED": 2})
		f.wantStates(codes, map[string]enrollment.CodeState{
			"A-01": enrollment.CodeRedeemed, "A-02": enrollment.CodeRevoked, "A-03": enrollment.CodeExpired,
			"A-04": enrollment.CodeExpired, "A-05": enrollment.CodeExpired, "B-01": enrollment.CodeIssued,
		})
		if got := f.sweeps("sweep B's redeem-by", 100, sweepAt(due.Add(24*time.Hour))); !slices.Equal(got, []int{3, 0}) {
			t.Fatalf("sweeps at B's redeem-by expired %v, want [3 0]", got)
		}
		if got := f.sweeps("sweep a year on", 100, sweepAt(due.AddDate(1, 0, 0))); !slices.Equal(got, []int{0}) {
			t.Fatalf("a later sweep expired %v again", got)
		}
		wantDelta(t, beforeA, f.wantCountersEqualRecount("after every sweep"), map[string]int64{
			"cohort-a/code/ISSUED": -3, "cohort-a/code/EXPIRED": 3, "cohort-b/code/ISSUED": -3, "cohort-b/code/EXPIRED": 3,
		})
		// The summarised code events are not partner events: the feeds did not move.
		if a, b := f.feedTail(PartnerID, feedA), f.feedTail(PartnerB, feedB); len(a)+len(b) != 0 {
			t.Fatalf("code sweep wrote partner events %q %q", a, b)
		}
		// An expired code no longer holds its person: a reissue gives them a new one.
		now := due.Add(48 * time.Hour)
		before := f.counters()
		b := f.reissueBatch("batch-re", now)
		_, err = f.S.ReissueCode(ctx, IncidentID, "A-03", "expired unused", b, now, Mint)
		must(t, err, "reissue after the sweep")
		wantDelta(t, before, f.wantCountersEqualRecount("after the reissue"), map[string]int64{"cohort-a/code/ISSUED": 1})
		f.wantReissued(b, "A-03", codes["A-03"], now)
		f.wantStates(codes, map[string]enrollment.CodeState{"A-03": enrollment.CodeExpired})
	},
	"sweep enrollments lapses pending and expires active ones at their deadlines": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 3)
		ctx := t.Context()
		active := f.Activate("enr-A-02", "M-2", ActivateTime)
		end := time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC) // 2024-02-29 + 24 months, clamped
		wantTime(t, "CoverageEnd", active.CoverageEnd, end)
		_, err := f.S.CancelEnrollment(ctx, "enr-A-03", PartnerID, "asked", ActivateTime)
		must(t, err, "cancel")
		deadline := f.Enrollment("enr-A-01").ActivationDeadline
		feedA, feedB := len(f.feed(PartnerID, 100)), len(f.feed(PartnerB, 100))
		beforeA, beforeB := f.counters(), f.countersOf(IncidentB, "incident b")
		sweepAt := func(now time.Time) func(int) (int, error) {
			return func(limit int) (int, error) { return f.S.SweepEnrollments(ctx, now, limit) }
		}
		states := func() string {
			out := ""
			for _, id := range []string{"enr-A-01", "enr-A-02", "enr-A-03", "enr-B-01", "enr-B-02"} {
				out += fmt.Sprintf("%s=%s ", id, f.Enrollment(id).State)
			}
			return out
		}

		if got := f.sweeps("sweep a second early", 100, sweepAt(deadline.Add(-time.Second))); !slices.Equal(got, []int{0}) {
			t.Fatalf("sweep a second before the activation deadline ended %v", got)
		}
		// enr-A-01, enr-B-01 and enr-B-02 lapse at the deadline, two per call.
		if got := f.sweeps("sweep at the deadline", 2, sweepAt(deadline)); !slices.Equal(got, []int{2, 1, 0}) {
			t.Fatalf("sweeps at the activation deadline ended %v, want [2 1 0]", got)
		}
		if got, want := states(), "enr-A-01=LAPSED enr-A-02=ACTIVE enr-A-03=CANCELLED enr-B-01=LAPSED enr-B-02=LAPSED "; got != want {
			t.Fatalf("after the lapse sweep: %s, want %s", got, want)
		}
		wantDelta(t, beforeA, f.wantCountersEqualRecount("after the lapse sweep"), map[string]int64{"cohort-a/enrollment/PENDING": -1, "cohort-a/enrollment/LAPSED": 1})
		wantDelta(t, beforeB, f.countersOf(IncidentB, "incident b after the lapse sweep"), map[string]int64{"cohort-b/enrollment/PENDING": -2, "cohort-b/enrollment/LAPSED": 2})
		if got := f.feedTail(PartnerID, feedA); !slices.Equal(got, []string{"enrollment.lapsed enrollments/enr-A-01"}) {
			t.Fatalf("partner a's new events = %q", got)
		}
		if got := f.feedTail(PartnerB, feedB); !slices.Equal(got, []string{"enrollment.lapsed enrollments/enr-B-01", "enrollment.lapsed enrollments/enr-B-02"}) {
			t.Fatalf("partner b's new events = %q", got)
		}
		for _, e := range f.feed(PartnerID, 100)[feedA:] {
			wantTime(t, "lapse event time", e.Time, deadline)
		}

		if got := f.sweeps("sweep a second before coverage ends", 100, sweepAt(end.Add(-time.Second))); !slices.Equal(got, []int{0}) {
			t.Fatalf("sweep a second before coverage end ended %v", got)
		}
		if e := f.Enrollment("enr-A-02"); e.State != enrollment.EnrollmentActive {
			t.Fatalf("a second before coverage end enr-A-02 is %s", e.State)
		}
		if got := f.sweeps("sweep at coverage end", 100, sweepAt(end)); !slices.Equal(got, []int{1, 0}) {
			t.Fatalf("sweeps at coverage end ended %v, want [1 0]", got)
		}
		if got := f.sweeps("sweep later", 100, sweepAt(end.AddDate(1, 0, 0))); !slices.Equal(got, []int{0}) {
			t.Fatalf("a later sweep ended %v again", got)
		}
		if got, want := states(), "enr-A-01=LAPSED enr-A-02=EXPIRED enr-A-03=CANCELLED enr-B-01=LAPSED enr-B-02=LAPSED "; got != want {
			t.Fatalf("after the expiry sweep: %s, want %s", got, want)
		}
		wantDelta(t, beforeA, f.wantCountersEqualRecount("after the expiry sweep"), map[string]int64{
			"cohort-a/enrollment/PENDING": -1, "cohort-a/enrollment/LAPSED": 1, "cohort-a/enrollment/ACTIVE": -1, "cohort-a/enrollment/EXPIRED": 1,
		})
		all := f.feed(PartnerID, 100)
		if last := all[len(all)-1]; eventKey(last) != "enrollment.expired enrollments/enr-A-02" || last.Sequence != int64(feedA+2) {
			t.Fatalf("last event of partner a = %+v, want enrollment.expired of enr-A-02 as number %d", last, feedA+2)
		} else {
			wantTime(t, "expiry event time", last.Time, end)
		}
		// Terminal enrollments stay as they are.
		_, err = f.S.ActivateEnrollment(ctx, "enr-A-01", PartnerID, "M-1", deadline.Add(-time.Hour))
		wantKind(t, err, enrollment.ErrFailedPrecondition, "activate a lapsed enrollment")
	},
	"the expiring notice goes out once, thirty days before coverage ends": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 3)
		ctx := t.Context()
		first := f.Activate("enr-A-01", "M-1", ActivateTime)                    // ends 2026-02-28 10:00
		second := f.Activate("enr-A-02", "M-2", ActivateTime.AddDate(0, 0, 10)) // ends 2026-03-10 10:00
		const window = 30 * 24 * time.Hour
		feedA := len(f.feed(PartnerID, 100))
		before := f.counters()
		notice := func(now time.Time, want int) {
			t.Helper()
			n, err := f.S.SweepExpiring(ctx, now, window, 100)
			must(t, err, "sweep expiring at "+now.Format(time.RFC3339))
			if n != want {
				t.Fatalf("SweepExpiring at %s notified %d, want %d", now.Format(time.RFC3339), n, want)
			}
		}
		notice(first.CoverageEnd.Add(-window-time.Second), 0)
		notice(first.CoverageEnd.Add(-window), 1)
		notice(first.CoverageEnd.Add(-window), 0)
		notice(first.CoverageEnd.Add(-window+time.Hour), 0)
		if got := f.feedTail(PartnerID, feedA); !slices.Equal(got, []string{"enrollment.expiring enrollments/enr-A-01"}) {
			t.Fatalf("partner feed after three runs = %q, want one notice for enr-A-01", got)
		}
		notice(second.CoverageEnd.Add(-window-time.Second), 0)
		notice(second.CoverageEnd.Add(-window), 1)
		notice(second.CoverageEnd.Add(-time.Second), 0)
		notice(second.CoverageEnd, 0)
		want := []string{"enrollment.expiring enrollments/enr-A-01", "enrollment.expiring enrollments/enr-A-02"}
		if got := f.feedTail(PartnerID, feedA); !slices.Equal(got, want) {
			t.Fatalf("partner feed = %q, want %q", got, want)
		}
		for _, id := range []string{"enr-A-01", "enr-A-02"} {
			if e := f.Enrollment(id); e.State != enrollment.EnrollmentActive {
				t.Fatalf("the notice changed %s to %s", id, e.State)
			}
		}
		wantDelta(t, before, f.wantCountersEqualRecount("after the notices"), nil)
	},
}
