package storetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/store"
)

const idemScope = "clients/admin-1"

// idemRecord is a reservation of key made at created, kept for a day; hash names the request.
func idemRecord(key, hash string, created time.Time) store.IdempotencyRecord {
	h := sha256.Sum256([]byte(hash))
	return store.IdempotencyRecord{
		Scope: idemScope, Key: key, Method: "/enroll.v1.AdminService/ReissueCode", RequestHash: h[:],
		CreateTime: created, ExpireTime: created.Add(24 * time.Hour),
	}
}

// reserve reserves rec and fails t unless reserved is wantReserved; it returns the existing
// record when there is one.
func (f *Fixture) reserve(rec store.IdempotencyRecord, staleBefore time.Time, wantReserved bool) *store.IdempotencyRecord {
	f.T.Helper()
	existing, reserved, err := f.S.ReserveIdempotencyKey(f.T.Context(), rec, staleBefore)
	must(f.T, err, "reserve "+rec.Key)
	switch {
	case reserved != wantReserved:
		f.T.Fatalf("reserve %s: reserved = %v, want %v (existing %+v)", rec.Key, reserved, wantReserved, existing)
	case reserved && existing != nil:
		f.T.Fatalf("reserve %s: reserved and returned an existing record %+v", rec.Key, existing)
	case !reserved && existing == nil:
		f.T.Fatalf("reserve %s: neither reserved nor returned the record in the way", rec.Key)
	}
	return existing
}

// wantRecord fails t unless got is want's reservation with the given outcome.
func wantRecord(t testing.TB, what string, got *store.IdempotencyRecord, want store.IdempotencyRecord, done bool, response []byte, code int, message string) {
	t.Helper()
	if got.Scope != want.Scope || got.Key != want.Key || got.Method != want.Method || !bytes.Equal(got.RequestHash, want.RequestHash) {
		t.Fatalf("%s: record %+v, want the reservation %+v", what, got, want)
	}
	if got.Done != done || !bytes.Equal(got.Response, response) || got.Code != code || got.Message != message {
		t.Fatalf("%s: outcome done=%v response=%q code=%d message=%q, want %v %q %d %q",
			what, got.Done, got.Response, got.Code, got.Message, done, response, code, message)
	}
	wantTime(t, what+" CreateTime", got.CreateTime, want.CreateTime)
	wantTime(t, what+" ExpireTime", got.ExpireTime, want.ExpireTime)
}

var idempotencyTests = map[string]func(t *testing.T, open OpenFunc){
	"a reserved key returns its record, and its outcome once complete": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		ctx := t.Context()
		first := idemRecord("req-1", "request a", Base)
		f.reserve(first, Base.Add(-time.Minute), true)
		got := f.reserve(idemRecord("req-1", "request b", Base.Add(time.Second)), Base.Add(-time.Minute), false)
		wantRecord(t, "pending record", got, first, false, nil, 0, "")
		other := idemRecord("req-1", "request a", Base)
		other.Scope = "clients/admin-2"
		f.reserve(other, Base.Add(-time.Minute), true) // scopes do not share keys

		response := []byte("serialized response")
		must(t, f.S.CompleteIdempotencyKey(ctx, idemScope, "req-1", response, 0, ""), "complete ok")
		got = f.reserve(idemRecord("req-1", "request a", Base.Add(time.Minute)), Base.Add(-time.Minute), false)
		wantRecord(t, "completed record", got, first, true, response, 0, "")

		failed := idemRecord("req-2", "request c", Base)
		f.reserve(failed, Base.Add(-time.Minute), true)
		must(t, f.S.CompleteIdempotencyKey(ctx, idemScope, "req-2", nil, 5, "enrollment not found"), "complete with an error")
		got = f.reserve(failed, Base.Add(-time.Minute), false)
		wantRecord(t, "failed call", got, failed, true, nil, 5, "enrollment not found")

		// Release forgets only pending claims: an outcome stays to be replayed.
		must(t, f.S.ReleaseIdempotencyKey(ctx, idemScope, "req-1"), "release a done record")
		got = f.reserve(idemRecord("req-1", "request a", Base.Add(time.Minute)), Base.Add(time.Hour), false)
		wantRecord(t, "done record after a release", got, first, true, response, 0, "")
	},
	"release deletes a pending claim so a retry runs again": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.reserve(idemRecord("req-1", "request a", Base), Base.Add(-time.Minute), true)
		must(t, f.S.ReleaseIdempotencyKey(t.Context(), idemScope, "req-1"), "release")
		retry := idemRecord("req-1", "request a", Base.Add(time.Second))
		f.reserve(retry, Base.Add(-time.Minute), true)
		got := f.reserve(idemRecord("req-1", "request a", Base.Add(2*time.Second)), Base.Add(-time.Minute), false)
		wantRecord(t, "the retry's claim", got, retry, false, nil, 0, "")
		must(t, f.S.ReleaseIdempotencyKey(t.Context(), idemScope, "req-unknown"), "release an unknown key")
	},
	"a pending claim older than staleBefore is taken over, once": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		dead := idemRecord("req-1", "request a", Base)
		f.reserve(dead, Base.Add(-time.Minute), true)
		// Not older than staleBefore: the claim stands.
		got := f.reserve(idemRecord("req-1", "request a", Base.Add(time.Minute)), Base, false)
		wantRecord(t, "claim at staleBefore", got, dead, false, nil, 0, "")
		// Older: the caller died mid-call; of twenty retries at once exactly one takes over.
		// Rounds on further keys give a racy double take-over more chances to show.
		var retries []store.IdempotencyRecord
		winner := -1
		for round := range 5 {
			key := fmt.Sprint("req-", round+1)
			if round > 0 {
				f.reserve(idemRecord(key, "request a", Base), Base.Add(-time.Minute), true)
			}
			const n = 20
			retries = make([]store.IdempotencyRecord, n)
			reserved := make([]bool, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				retries[i] = idemRecord(key, fmt.Sprintf("retry %d", i), Base.Add(5*time.Minute+time.Duration(i)*time.Millisecond))
				wg.Go(func() {
					<-start
					_, reserved[i], errs[i] = f.S.ReserveIdempotencyKey(t.Context(), retries[i], Base.Add(time.Minute))
				})
			}
			close(start)
			wg.Wait()
			winner = -1
			for i := range n {
				must(t, errs[i], fmt.Sprintf("round %d: retry %d", round, i))
				if reserved[i] && winner >= 0 {
					t.Fatalf("round %d: retries %d and %d both took the stale claim over", round, winner, i)
				}
				if reserved[i] {
					winner = i
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: no retry took the stale claim over", round)
			}
		}
		// The last round's winner holds req-5 now.
		got = f.reserve(idemRecord("req-5", "request a", Base.Add(6*time.Minute)), Base.Add(time.Minute), false)
		wantRecord(t, "taken-over claim", got, retries[winner], false, nil, 0, "")
		// A completed record is never stale.
		must(t, f.S.CompleteIdempotencyKey(t.Context(), idemScope, "req-5", []byte("r"), 0, ""), "complete")
		got = f.reserve(idemRecord("req-5", "request a", Base.Add(time.Hour)), Base.Add(time.Hour), false)
		wantRecord(t, "old completed record", got, retries[winner], true, []byte("r"), 0, "")
	},
	"concurrent reserves of a new key: exactly one reserves": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		const n = 10
		reserved := make([]bool, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				_, reserved[i], errs[i] = f.S.ReserveIdempotencyKey(t.Context(), idemRecord("req-1", "request a", Base), Base.Add(-time.Minute))
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for i := range n {
			must(t, errs[i], fmt.Sprintf("reserve %d", i))
			if reserved[i] {
				wins++
			}
		}
		if wins != 1 {
			t.Fatalf("%d concurrent reserves won, want 1", wins)
		}
	},
	"purge deletes only expired records, up to limit": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		ctx := t.Context()
		created := []time.Time{Base, Base.Add(time.Minute), Base.Add(2 * time.Minute), Base.Add(30 * time.Hour), Base.Add(40 * time.Hour)}
		// The live records go in first and sort first, so that a purge that picked records
		// without looking at their expiry would pick them.
		key := func(i int) string {
			if i < 3 {
				return fmt.Sprint("old-", i)
			}
			return fmt.Sprint("live-", i)
		}
		for _, i := range []int{4, 3, 0, 1, 2} {
			key := key(i)
			f.reserve(idemRecord(key, "request", created[i]), Base.Add(-time.Minute), true)
			if i%2 == 0 {
				must(t, f.S.CompleteIdempotencyKey(ctx, idemScope, key, []byte("r"), 0, ""), "complete "+key)
			}
		}
		now := Base.Add(25 * time.Hour) // old-0..2 expired an hour ago or less; live-3, live-4 live
		var counts []int
		for range 4 {
			n, err := f.S.PurgeIdempotencyKeys(ctx, now, 2)
			must(t, err, "purge")
			counts = append(counts, n)
		}
		if fmt.Sprint(counts) != "[2 1 0 0]" {
			t.Fatalf("purges with limit 2 deleted %v, want [2 1 0 0]", counts)
		}
		for i := range 5 {
			f.reserve(idemRecord(key(i), "again", now), now.Add(-time.Hour), i < 3)
		}
	},
}
