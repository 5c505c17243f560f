package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
)

// race runs sweep and each of writers at once; it returns what the sweep reported, the
// writers' errors and the sweep's.
func race(sweep func() (int, error), writers ...func() error) (swept int, errs []error, sweepErr error) {
	errs = make([]error, len(writers))
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { <-start; swept, sweepErr = sweep() })
	for i, w := range writers {
		wg.Go(func() { <-start; errs[i] = w() })
	}
	close(start)
	wg.Wait()
	return swept, errs, sweepErr
}

// wantOKOr fails t unless each err is nil or of kind; it returns which succeeded.
func wantOKOr(t testing.TB, what string, errs []error, kind error) []bool {
	t.Helper()
	ok := make([]bool, len(errs))
	for i, err := range errs {
		switch {
		case err == nil:
			ok[i] = true
		case !isKind(err, kind):
			t.Fatalf("%s %d: %v, want success or %v", what, i, err, kind)
		}
	}
	return ok
}

var sweepRaceTests = map[string]func(t *testing.T, open OpenFunc){
	"a code sweep racing reissues and last-moment redemptions: no error, each code ends once": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		ctx := t.Context()
		all := refs("A", 200)
		f.Subjects(CohortA, all...)
		b := f.Issue("batch-a", CohortA)
		codes := f.Codes(b.ID)
		due := b.RedeemBy
		reissued, redeemed := all[:20], all[20:30]
		var writers []func() error
		for _, ref := range reissued {
			writers = append(writers, func() error {
				_, err := f.S.ReissueCode(ctx, IncidentID, ref, "lost", f.reissueBatch("re-"+ref, due), due, Mint)
				return err
			})
		}
		for _, ref := range redeemed {
			// The request was taken a moment before redeem-by.
			writers = append(writers, func() error {
				_, _, err := f.S.RedeemCode(ctx, [][]byte{codes[ref]}, "enr-"+ref, due.Add(-time.Millisecond))
				return err
			})
		}
		swept, errs, err := race(func() (int, error) { return f.S.SweepCodes(ctx, due, 1000) }, writers...)
		must(t, err, "code sweep")
		// A reissue that loses to the sweep on the old code is told to read it again; the
		// retry then finds no live code and issues the new one.
		for i, ok := range wantOKOr(t, "reissue", errs[:len(reissued)], enrollment.ErrFailedPrecondition) {
			if !ok {
				must(t, writers[i](), "retry reissue "+reissued[i])
			}
		}
		won := count(wantOKOr(t, "redeem", errs[len(reissued):], enrollment.ErrFailedPrecondition))
		got := f.wantCountersEqualRecount("after the race")
		// Every old code ended once: redeemed, or expired by the sweep or by its reissue.
		if got["cohort-a/code/REDEEMED"] != int64(won) || got["cohort-a/code/EXPIRED"] != int64(len(all)-won) ||
			got["cohort-a/code/ISSUED"] != int64(len(reissued)) {
			t.Fatalf("counters = %v, want %d redeemed, %d expired, %d new issued", got, won, len(all)-won, len(reissued))
		}
		if swept > len(all)-won || swept < len(all)-won-len(reissued) {
			t.Fatalf("sweep reported %d, want between %d and %d", swept, len(all)-won-len(reissued), len(all)-won)
		}
		if n, err := f.S.SweepCodes(ctx, due, 1000); err != nil || n != 0 {
			t.Fatalf("second sweep = %d, %v; want nothing left", n, err)
		}
	},
	"sweeps racing partner writes: no error, every enrollment ends once": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		ctx := t.Context()
		all := refs("A", 40)
		f.Subjects(CohortA, all...)
		codes := f.Codes(f.Issue("batch-a", CohortA).ID)
		lapsing, cancelled, activated := all[:20], all[20:30], all[30:]
		for _, ref := range all[:30] {
			f.Redeem(codes[ref], "enr-"+ref, RedeemTime)
		}
		for _, ref := range activated {
			f.Redeem(codes[ref], "enr-"+ref, RedeemTime.AddDate(0, 0, 20))
		}
		deadline := f.Enrollment("enr-" + lapsing[0]).ActivationDeadline
		cancel := func(ref string, at time.Time) func() error {
			return func() error { _, err := f.S.CancelEnrollment(ctx, "enr-"+ref, PartnerID, "asked", at); return err }
		}
		want := map[string]string{} // enrollment → its event types after creation, in order

		// Round 1, at the activation deadline: the lapse sweep races cancellations that came
		// in a second earlier and activations of enrollments that are not due.
		var writers []func() error
		for _, ref := range cancelled {
			writers = append(writers, cancel(ref, deadline.Add(-time.Second)))
		}
		for _, ref := range activated {
			writers = append(writers, func() error {
				_, err := f.S.ActivateEnrollment(ctx, "enr-"+ref, PartnerID, "M-"+ref, deadline)
				return err
			})
		}
		n, errs, err := race(func() (int, error) { return f.S.SweepEnrollments(ctx, deadline, 1000) }, writers...)
		must(t, err, "lapse sweep")
		ok := wantOKOr(t, "cancel", errs[:len(cancelled)], enrollment.ErrFailedPrecondition)
		for i, err := range errs[len(cancelled):] {
			must(t, err, "activate "+activated[i])
		}
		lapsed := len(lapsing)
		for _, ref := range lapsing {
			want["enr-"+ref] = "enrollment.lapsed"
		}
		for i, ref := range cancelled {
			want["enr-"+ref] = "enrollment.lapsed"
			if ok[i] {
				want["enr-"+ref] = "enrollment.cancelled"
			} else {
				lapsed++
			}
		}
		for _, ref := range activated {
			want["enr-"+ref] = "enrollment.activated"
		}
		if n != lapsed {
			t.Fatalf("lapse sweep reported %d, want %d", n, lapsed)
		}
		f.wantCountersEqualRecount("after round 1")

		// Round 2, thirty days before coverage ends: the notice sweep races cancellations.
		end := enrollment.AddMonthsClamped(deadline, 24)
		notice := end.Add(-30 * 24 * time.Hour)
		writers = nil
		for _, ref := range activated[:5] {
			writers = append(writers, cancel(ref, notice))
		}
		n, errs, err = race(func() (int, error) { return f.S.SweepExpiring(ctx, notice, 30*24*time.Hour, 1000) }, writers...)
		must(t, err, "expiring sweep")
		for i, err := range errs {
			must(t, err, "cancel "+activated[i])
		}
		f.wantCountersEqualRecount("after round 2")

		// Round 3, at coverage end: the expiry sweep races cancellations a second earlier.
		writers = nil
		for _, ref := range activated[5:8] {
			writers = append(writers, cancel(ref, end.Add(-time.Second)))
		}
		expired, errs, err := race(func() (int, error) { return f.S.SweepEnrollments(ctx, end, 1000) }, writers...)
		must(t, err, "expiry sweep")
		ok = wantOKOr(t, "cancel", errs, enrollment.ErrFailedPrecondition)
		f.wantCountersEqualRecount("after round 3")

		// Every enrollment's events: created, what round 1 did, and for the activated ones a
		// notice unless cancelled first, then a cancellation or an expiry.
		got := map[string]string{}
		for _, e := range f.feed(PartnerID, 100) {
			id := e.Resource[len("enrollments/"):]
			if e.Type == "enrollment.created" {
				continue
			}
			if got[id] != "" {
				got[id] += " "
			}
			got[id] += e.Type
		}
		notified := 0
		for i, ref := range activated {
			id := "enr-" + ref
			switch {
			case i < 5:
				// Cancelled in round 2: the notice may have gone out just before, never after.
				if got[id] == "enrollment.activated enrollment.expiring enrollment.cancelled" {
					notified++
					want[id] = got[id]
				} else {
					want[id] += " enrollment.cancelled"
				}
			case i < 8 && ok[i-5]:
				want[id] += " enrollment.expiring enrollment.cancelled"
				notified++
			default:
				want[id] += " enrollment.expiring enrollment.expired"
				notified++
			}
		}
		if n != notified {
			t.Fatalf("notice sweep reported %d, the feed has %d notices", n, notified)
		}
		if wantExpired := len(activated) - 5 - count(ok); expired != wantExpired {
			t.Fatalf("expiry sweep reported %d, want %d", expired, wantExpired)
		}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("events of %s after creation = %q, want %q", id, got[id], w)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("events name %d enrollments, want %d", len(got), len(want))
		}
	},
}

func count(xs []bool) int {
	n := 0
	for _, x := range xs {
		if x {
			n++
		}
	}
	return n
}
