package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
)

// feed pages through every event of a partner with limit and fails unless the pages are
// numbered 1..n without a gap, belong to the partner and never exceed limit.
func (f *Fixture) feed(partnerID string, limit int) []enrollment.Event {
	f.T.Helper()
	var out []enrollment.Event
	var after int64
	for range 10000 {
		page, err := f.S.ListPartnerEvents(f.T.Context(), partnerID, after, limit)
		must(f.T, err, "list partner events of "+partnerID)
		if len(page) > limit {
			f.T.Fatalf("page of %d events, limit %d", len(page), limit)
		}
		if len(page) == 0 {
			wantGapFree(f.T, partnerID, out)
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Sequence
	}
	f.T.Fatal("the partner feed never ends")
	return nil
}

// wantGapFree fails t unless events are exactly the sequences 1..n, in order, of partnerID.
func wantGapFree(t testing.TB, partnerID string, events []enrollment.Event) {
	t.Helper()
	for i, e := range events {
		if e.Sequence != int64(i+1) {
			t.Fatalf("feed of %s: event %d has sequence %d, want %d (sequences %s)", partnerID, i, e.Sequence, i+1, ids(events, eventSeq))
		}
		if e.PartnerID != partnerID {
			t.Fatalf("feed of %s holds an event of %q: %+v", partnerID, e.PartnerID, e)
		}
	}
}

// eventKey names an event by type and resource.
func eventKey(e enrollment.Event) string { return e.Type + " " + e.Resource }

func eventSeq(e enrollment.Event) string { return fmt.Sprint(e.Sequence) }

// feedTail returns the events of a partner after the first n, as type and resource.
func (f *Fixture) feedTail(partnerID string, n int) []string {
	f.T.Helper()
	all := f.feed(partnerID, 100)
	if len(all) < n {
		f.T.Fatalf("feed of %s shrank from %d to %d events", partnerID, n, len(all))
	}
	out := []string{}
	for _, e := range all[n:] {
		out = append(out, eventKey(e))
	}
	return out
}

// twoPartnerFixture adds partner-b serving incident-b (cohort B) to a fixture and issues n
// codes in each incident: A-01.. in cohort A of incident-a, B-01.. in incident-b.
func twoPartnerFixture(t *testing.T, open OpenFunc, n int) (f *Fixture, codesA, codesB map[string][]byte) {
	t.Helper()
	f = NewFixture(t, open)
	f.Subjects(CohortA, refs("A", n)...)
	f.AddPartner(PartnerB)
	f.AddIncident(IncidentB, PartnerB)
	f.AddCohort(IncidentB, CohortB, true)
	var rows []enrollment.SubjectRow
	for i, ref := range refs("B", n) {
		rows = append(rows, Row(int64(i+2), ref, CohortB, "b-"+ref))
	}
	f.Import(IncidentB, rows...)
	return f, f.Codes(f.Issue("batch-a", CohortA).ID), f.Codes(f.IssueIn(IncidentB, "batch-b", CohortB).ID)
}

var feedTests = map[string]func(t *testing.T, open OpenFunc){
	"each partner's feed is numbered 1..n in order and pages with after": func(t *testing.T, open OpenFunc) {
		f, codesA, codesB := twoPartnerFixture(t, open, 4)
		ctx := t.Context()
		want := map[string][]string{}
		wantTimes := map[string][]time.Time{}
		at := RedeemTime
		step := func(partner, typ, resource string, do func(now time.Time) error) {
			t.Helper()
			at = at.Add(time.Hour)
			must(t, do(at), typ+" "+resource)
			want[partner] = append(want[partner], typ+" "+resource)
			wantTimes[partner] = append(wantTimes[partner], at)
		}
		redeem := func(code []byte, id string) func(time.Time) error {
			return func(now time.Time) error { _, _, err := f.S.RedeemCode(ctx, [][]byte{code}, id, now); return err }
		}
		activate := func(id, partner string) func(time.Time) error {
			return func(now time.Time) error {
				_, err := f.S.ActivateEnrollment(ctx, id, partner, "M-"+id, now)
				return err
			}
		}
		cancel := func(id, partner string) func(time.Time) error {
			return func(now time.Time) error { _, err := f.S.CancelEnrollment(ctx, id, partner, "asked", now); return err }
		}
		revoke := func(incident, ref string) func(time.Time) error {
			return func(now time.Time) error { _, err := f.S.RevokeCode(ctx, incident, ref, "returned", now); return err }
		}
		reissue := func(incident, ref string) func(time.Time) error {
			return func(now time.Time) error {
				_, err := f.S.ReissueCode(ctx, incident, ref, "lost", f.reissueBatch("re-"+ref, now), now, Mint)
				return err
			}
		}
		subject := func(incident, ref string) string { return "incidents/" + incident + "/subjects/" + ref }
		step(PartnerID, "enrollment.created", "enrollments/enr-A-01", redeem(codesA["A-01"], "enr-A-01"))
		step(PartnerB, "enrollment.created", "enrollments/enr-B-01", redeem(codesB["B-01"], "enr-B-01"))
		step(PartnerID, "enrollment.activated", "enrollments/enr-A-01", activate("enr-A-01", PartnerID))
		step(PartnerID, "code.revoked", subject(IncidentID, "A-02"), revoke(IncidentID, "A-02"))
		step(PartnerB, "enrollment.activated", "enrollments/enr-B-01", activate("enr-B-01", PartnerB))
		step(PartnerID, "code.reissued", subject(IncidentID, "A-03"), reissue(IncidentID, "A-03"))
		step(PartnerB, "enrollment.cancelled", "enrollments/enr-B-01", cancel("enr-B-01", PartnerB))
		step(PartnerB, "code.reissued", subject(IncidentB, "B-02"), reissue(IncidentB, "B-02"))
		step(PartnerID, "enrollment.cancelled", "enrollments/enr-A-01", cancel("enr-A-01", PartnerID))
		step(PartnerID, "enrollment.created", "enrollments/enr-A-04", redeem(codesA["A-04"], "enr-A-04"))
		step(PartnerB, "code.revoked", subject(IncidentB, "B-03"), revoke(IncidentB, "B-03"))
		// Failures write nothing.
		_, err := f.S.CancelEnrollment(ctx, "enr-A-01", PartnerID, "again", at)
		wantKind(t, err, enrollment.ErrFailedPrecondition, "cancel twice")
		_, err = f.S.ActivateEnrollment(ctx, "enr-A-04", PartnerB, "M-x", at)
		wantKind(t, err, enrollment.ErrNotFound, "activate another partner's enrollment")

		for _, tc := range []struct{ partner, incident string }{{PartnerID, IncidentID}, {PartnerB, IncidentB}} {
			all := f.feed(tc.partner, 100)
			if got := f.feedTail(tc.partner, 0); !slices.Equal(got, want[tc.partner]) {
				t.Fatalf("feed of %s =\n%q\nwant\n%q", tc.partner, got, want[tc.partner])
			}
			for i, e := range all {
				wantTime(t, fmt.Sprintf("%s event %d time", tc.partner, e.Sequence), e.Time, wantTimes[tc.partner][i])
				if e.IncidentID != tc.incident || e.Count != 1 {
					t.Fatalf("feed of %s: event %+v, want incident %s and count 1", tc.partner, e, tc.incident)
				}
			}
			for _, limit := range []int{1, 2, 4} {
				if paged := f.feed(tc.partner, limit); !slices.EqualFunc(paged, all, func(a, b enrollment.Event) bool { return a.Sequence == b.Sequence && eventKey(a) == eventKey(b) }) {
					t.Fatalf("feed of %s with limit %d = %s, want %s", tc.partner, limit, ids(paged, eventKey), ids(all, eventKey))
				}
			}
			page, err := f.S.ListPartnerEvents(ctx, tc.partner, 2, 2)
			must(t, err, "list after 2")
			if ids(page, eventSeq) != "[3 4]" {
				t.Fatalf("feed of %s after 2, limit 2 = %s, want [3 4]", tc.partner, ids(page, eventSeq))
			}
			page, err = f.S.ListPartnerEvents(ctx, tc.partner, int64(len(all)), 10)
			must(t, err, "list after the last")
			if len(page) != 0 {
				t.Fatalf("feed of %s after its last event = %s", tc.partner, ids(page, eventKey))
			}
		}
		none, err := f.S.ListPartnerEvents(ctx, "partner-nope", 0, 10)
		must(t, err, "list unknown partner")
		if len(none) != 0 {
			t.Fatalf("unknown partner's feed = %s", ids(none, eventKey))
		}
		f.wantCountersEqualRecount("after the interleaved changes")
		f.countersOf(IncidentB, "incident b after the interleaved changes")
	},
	"concurrent writers get unique, gap-free sequence numbers": func(t *testing.T, open OpenFunc) {
		const nA, nB = 20, 8
		f, codesA, codesB := twoPartnerFixture(t, open, nA)
		run := func(what string, n int, do func(i int) error) {
			t.Helper()
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { <-start; errs[i] = do(i) })
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				must(t, err, fmt.Sprintf("%s %d", what, i))
			}
		}
		refsA, refsB := refs("A", nA), refs("B", nB)
		// Partner a's twenty redemptions race each other and partner b's eight.
		run("redeem", nA+nB, func(i int) error {
			if i >= nA {
				i -= nA
				_, _, err := f.S.RedeemCode(t.Context(), [][]byte{codesB[refsB[i]]}, "enr-"+refsB[i], RedeemTime)
				return err
			}
			code, id := codesA[refsA[i]], "enr-"+refsA[i]
			_, _, err := f.S.RedeemCode(t.Context(), [][]byte{code}, id, RedeemTime)
			return err
		})
		run("activate", nA, func(i int) error {
			_, err := f.S.ActivateEnrollment(t.Context(), "enr-"+refsA[i], PartnerID, "M-"+refsA[i], ActivateTime)
			return err
		})
		for _, tc := range []struct {
			partner string
			refs    []string
			types   []string
		}{
			{PartnerID, refsA, []string{"enrollment.created", "enrollment.activated"}},
			{PartnerB, refsB, []string{"enrollment.created"}},
		} {
			all := f.feed(tc.partner, 7)
			seen := map[string]int{}
			for _, e := range all {
				seen[eventKey(e)]++
			}
			if len(all) != len(tc.refs)*len(tc.types) {
				t.Fatalf("feed of %s has %d events, want %d", tc.partner, len(all), len(tc.refs)*len(tc.types))
			}
			for _, ref := range tc.refs {
				for _, typ := range tc.types {
					if k := typ + " enrollments/enr-" + ref; seen[k] != 1 {
						t.Fatalf("feed of %s has %q %d times, want once", tc.partner, k, seen[k])
					}
				}
			}
		}
		f.wantCountersEqualRecount("after the concurrent writers")
	},
}
