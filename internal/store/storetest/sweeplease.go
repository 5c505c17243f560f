package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

const sweepLease = "sweeper"

// claim calls ClaimLease at now for d and fails t unless the answer is want.
func (f *Fixture) claim(name, owner string, now time.Time, d time.Duration, want bool) {
	f.T.Helper()
	ok, err := f.S.ClaimLease(f.T.Context(), name, owner, now, now.Add(d))
	must(f.T, err, "claim "+name+" as "+owner)
	if ok != want {
		f.T.Fatalf("ClaimLease(%s, %s, at %s) = %v, want %v", name, owner, now.Format(time.RFC3339), ok, want)
	}
}

var namedLeaseTests = map[string]func(t *testing.T, open OpenFunc){
	"a named lease is held until it expires, renewed by its owner, freed by release": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		at := func(d time.Duration) time.Time { return Base.Add(d) }
		f.claim(sweepLease, "a", at(0), 2*time.Minute, true)              // free
		f.claim(sweepLease, "b", at(time.Minute), 2*time.Minute, false)   // held by a until 2m
		f.claim(sweepLease, "a", at(time.Minute), 2*time.Minute, true)    // a renews until 3m
		f.claim(sweepLease, "b", at(150*time.Second), time.Minute, false) // past a's first term, inside the renewal
		f.claim("other", "b", at(150*time.Second), time.Minute, true)     // names are independent
		f.claim(sweepLease, "b", at(3*time.Minute+time.Second), 2*time.Minute, true)
		f.claim(sweepLease, "a", at(3*time.Minute+2*time.Second), 2*time.Minute, false) // b holds it now
		// Only the holder's release frees it.
		must(t, f.S.ReleaseLease(t.Context(), sweepLease, "a"), "release by a non-holder")
		f.claim(sweepLease, "a", at(3*time.Minute+3*time.Second), 2*time.Minute, false)
		must(t, f.S.ReleaseLease(t.Context(), sweepLease, "b"), "release by the holder")
		f.claim(sweepLease, "a", at(3*time.Minute+4*time.Second), 2*time.Minute, true)
		must(t, f.S.ReleaseLease(t.Context(), "never-claimed", "a"), "release of an unknown lease")
	},
	"concurrent claims of a free lease: exactly one owner wins": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		// Round 0 races for a lease never claimed, round 1 for an expired one, round 2 for one
		// released within its term.
		for round, now := range []time.Time{Base, Base.Add(time.Hour), Base.Add(time.Hour + 10*time.Second)} {
			const n = 10
			won := make([]bool, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					won[i], errs[i] = f.S.ClaimLease(t.Context(), sweepLease, fmt.Sprintf("owner-%d-%d", round, i), now, now.Add(time.Minute))
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i := range n {
				must(t, errs[i], fmt.Sprintf("round %d: claim %d", round, i))
				if won[i] && winner >= 0 {
					t.Fatalf("round %d: owners %d and %d both hold the lease", round, winner, i)
				}
				if won[i] {
					winner = i
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: nobody got the lease", round)
			}
			f.claim(sweepLease, "late", now.Add(30*time.Second), time.Minute, false)
			if round == 1 {
				must(t, f.S.ReleaseLease(t.Context(), sweepLease, fmt.Sprintf("owner-%d-%d", round, winner)), "release")
			}
		}
	},
}
