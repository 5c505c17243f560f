package sweeper_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/clock"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
	"github.com/idprotect/enroll/internal/store/storetest"
	"github.com/idprotect/enroll/internal/sweeper"
)

var discard = slog.New(slog.DiscardHandler)

// fixture opens a fresh store on engine and seeds it with the shared suite's fixture.
func fixture(t *testing.T, engine gormtest.Engine) (*storetest.Fixture, *gormstore.Store) {
	t.Helper()
	s := engine.Open(t)
	return storetest.NewFixture(t, func(testing.TB) store.Store { return s }), s
}

// wantCounters fails t unless the incident's counters equal a recount, and returns the
// state gauges keyed by cohort/kind/state.
func wantCounters(t *testing.T, s store.Store, what string) map[string]int64 {
	t.Helper()
	counters, err := s.Counters(t.Context(), storetest.IncidentID)
	if err != nil {
		t.Fatalf("%s: counters: %v", what, err)
	}
	recount, err := s.Recount(t.Context(), storetest.IncidentID)
	if err != nil {
		t.Fatalf("%s: recount: %v", what, err)
	}
	index := func(rows []enrollment.CounterRow) map[string]int64 {
		out := map[string]int64{}
		for _, r := range rows {
			if r.N != 0 {
				out[fmt.Sprintf("%s/%s/%s@%s", r.CohortID, r.Kind, r.State, r.Day)] = r.N
			}
		}
		return out
	}
	c, r := index(counters), index(recount)
	if !reflect.DeepEqual(c, r) {
		t.Fatalf("%s: counters differ from the recount\ncounters %v\nrecount  %v", what, c, r)
	}
	gauges := map[string]int64{}
	for _, row := range counters {
		if row.Day == "" && row.N != 0 {
			gauges[fmt.Sprintf("%s/%s/%s", row.CohortID, row.Kind, row.State)] = row.N
		}
	}
	return gauges
}

// expiredEvents returns the counts of the codes.expired events.
func expiredEvents(t *testing.T, s *gormstore.Store) []int64 {
	t.Helper()
	var counts []int64
	if err := s.DB().Table("events").Where("type = ?", "codes.expired").Order("seq").Pluck("count", &counts).Error; err != nil {
		t.Fatalf("read codes.expired events: %v", err)
	}
	return counts
}

// sweepCodes is how many codes the concurrent test issues and expires; ENROLL_SWEEP_CODES
// overrides it.
func sweepCodes(t *testing.T) int {
	n := 100_000
	if v := os.Getenv("ENROLL_SWEEP_CODES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("ENROLL_SWEEP_CODES=%q: want a positive number", v)
		}
	}
	return n
}

// TestTwoSweepersExpireEveryCodeOnce issues 100,000 codes, moves past their redeem-by and runs
// two sweepers against the one database at once, as two replicas would: every code is
// expired exactly once, by one sweep run, with the counters right and the events summarised.
func TestTwoSweepersExpireEveryCodeOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("issues and sweeps 100,000 codes per engine (about a minute); run without -short")
	}
	t.Parallel()
	n := sweepCodes(t)
	const batch = 5000
	for _, engine := range gormtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Parallel()
			f, s := fixture(t, engine)
			began := time.Now()
			rows := make([]enrollment.SubjectRow, 0, 5000)
			for i := range n {
				ref := fmt.Sprintf("S-%07d", i+1)
				rows = append(rows, storetest.Row(int64(i+2), ref, storetest.CohortA, ref))
				if len(rows) == cap(rows) || i == n-1 {
					f.Import(storetest.IncidentID, rows...)
					rows = rows[:0]
				}
			}
			imported := time.Now()
			b := f.StartBatch("batch-big", storetest.CohortA)
			if issued := f.Drain(b.ID, 10_000, storetest.Mint); issued != n {
				t.Fatalf("issued %d codes, want %d", issued, n)
			}
			if err := s.FinishBatch(t.Context(), b.ID, enrollment.BatchSucceeded, "", storetest.Base); err != nil {
				t.Fatal(err)
			}
			issuedAt := time.Now()
			if got := wantCounters(t, s, "after issuance"); got["cohort-a/code/ISSUED"] != int64(n) {
				t.Fatalf("counters after issuance = %v, want %d ISSUED", got, n)
			}

			clk := clock.NewFake(b.RedeemBy)
			type run struct {
				owner string
				r     sweeper.Result
			}
			var (
				mu   sync.Mutex
				runs []run
				errs []error
			)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, owner := range []string{"replica-a", "replica-b"} {
				sw := sweeper.New(sweeper.Config{Store: s, Clock: clk, Log: discard, Owner: owner, Batch: batch})
				wg.Go(func() {
					<-start
					// Sweep until a sweep that held the lease found nothing left; while the other
					// replica holds it, retry as the ticker would, only faster.
					for range 100_000 {
						r, err := sw.Sweep(t.Context())
						mu.Lock()
						runs = append(runs, run{owner, r})
						if err != nil {
							errs = append(errs, fmt.Errorf("%s: %w", owner, err))
						}
						mu.Unlock()
						if err != nil || (!r.Skipped && r.CodesExpired == 0) {
							return
						}
						if r.Skipped {
							time.Sleep(time.Millisecond)
						}
					}
				})
			}
			close(start)
			wg.Wait()
			swept := time.Now()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("sweeper failed: %v", err)
			}
			var total, working, skipped int
			for _, r := range runs {
				total += r.r.CodesExpired
				if r.r.CodesExpired > 0 {
					working++
				}
				if r.r.Skipped {
					skipped++
				}
			}
			if total != n || working != 1 {
				t.Fatalf("sweep runs expired %d codes in all, %d runs did work; want %d codes by exactly one run (%d runs, %d skipped)",
					total, working, n, len(runs), skipped)
			}
			got := wantCounters(t, s, "after the sweeps")
			if got["cohort-a/code/EXPIRED"] != int64(n) || got["cohort-a/code/ISSUED"] != 0 {
				t.Fatalf("counters after the sweeps = %v, want %d EXPIRED and none ISSUED", got, n)
			}
			events := expiredEvents(t, s)
			var sum int64
			for _, c := range events {
				sum += c
			}
			if sum != int64(n) || len(events) != (n+batch-1)/batch {
				t.Fatalf("%d codes.expired events summing to %d, want one per %d-code transaction (%d) summing to %d",
					len(events), sum, batch, (n+batch-1)/batch, n)
			}
			// Both replicas released the lease: a third one takes it at once.
			if ok, err := s.ClaimLease(t.Context(), sweeper.LeaseName, "replica-c", clk.Now(), clk.Now().Add(time.Minute)); err != nil || !ok {
				t.Fatalf("lease after the sweeps: claimed %v, %v; want it free", ok, err)
			}
			t.Logf("%s: %d codes: import %s, issue %s, two sweepers %s (%d runs, %d skipped)", engine.Name, n,
				imported.Sub(began).Round(time.Millisecond), issuedAt.Sub(imported).Round(time.Millisecond),
				swept.Sub(issuedAt).Round(time.Millisecond), len(runs), skipped)
		})
	}
}

// TestSweepRunsEveryStep: one sweep records every due change, a step at a time in
// transactions of Batch rows, renewing its lease between them, and then releases the lease.
func TestSweepRunsEveryStep(t *testing.T) {
	t.Parallel()
	for _, engine := range gormtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Parallel()
			f, s := fixture(t, engine)
			f.Subjects(storetest.CohortA, "A-1", "A-2", "A-3", "A-4", "A-5")
			codes := f.Codes(f.Issue("batch-a", storetest.CohortA).ID)
			f.Redeem(codes["A-1"], "enr-1", storetest.RedeemTime) // lapses
			f.Redeem(codes["A-2"], "enr-2", storetest.RedeemTime) // active, ends 2026-02-28
			f.Activate("enr-2", "M-2", storetest.ActivateTime)
			ctx := t.Context()
			for i, expire := range []time.Time{storetest.Base.Add(24 * time.Hour), storetest.Base.AddDate(1, 0, 0), storetest.Base.AddDate(5, 0, 0)} {
				rec := store.IdempotencyRecord{Scope: "clients/a", Key: fmt.Sprint("req-", i), Method: "/m", RequestHash: []byte{1},
					CreateTime: storetest.Base, ExpireTime: expire}
				if _, _, err := s.ReserveIdempotencyKey(ctx, rec, storetest.Base); err != nil {
					t.Fatal(err)
				}
			}
			clk := clock.NewFake(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
			sw := sweeper.New(sweeper.Config{Store: s, Clock: clk, Log: discard, Owner: "replica-a", Batch: 1})

			// Another replica holds the lease: this one skips and changes nothing.
			if ok, err := s.ClaimLease(ctx, sweeper.LeaseName, "replica-b", clk.Now(), clk.Now().Add(time.Minute)); err != nil || !ok {
				t.Fatalf("replica b's claim: %v, %v", ok, err)
			}
			before := wantCounters(t, s, "before")
			r, err := sw.Sweep(ctx)
			if err != nil || r != (sweeper.Result{Skipped: true}) {
				t.Fatalf("sweep under another replica's lease = %+v, %v; want skipped", r, err)
			}
			if after := wantCounters(t, s, "after a skipped sweep"); !reflect.DeepEqual(after, before) {
				t.Fatalf("a skipped sweep changed the counters: %v → %v", before, after)
			}
			// Once that lease has expired, this one sweeps everything due.
			clk.Advance(time.Minute + time.Second)
			r, err = sw.Sweep(ctx)
			want := sweeper.Result{CodesExpired: 3, EnrollmentsEnded: 1, ExpiringNotices: 1, IdempotencyPurged: 2}
			if err != nil || r != want {
				t.Fatalf("sweep = %+v, %v; want %+v", r, err, want)
			}
			got := wantCounters(t, s, "after the sweep")
			if got["cohort-a/code/EXPIRED"] != 3 || got["cohort-a/code/ISSUED"] != 0 || got["cohort-a/enrollment/LAPSED"] != 1 || got["cohort-a/enrollment/ACTIVE"] != 1 {
				t.Fatalf("counters after the sweep = %v", got)
			}
			r, err = sw.Sweep(ctx)
			if err != nil || r != (sweeper.Result{}) {
				t.Fatalf("second sweep = %+v, %v; want nothing to do", r, err)
			}
			// The lease was released: replica b takes it without waiting.
			if ok, err := s.ClaimLease(ctx, sweeper.LeaseName, "replica-b", clk.Now(), clk.Now().Add(time.Minute)); err != nil || !ok {
				t.Fatalf("lease after the sweep: %v, %v; want it free", ok, err)
			}
		})
	}
}

// TestRunStopsWithItsContext: Run sweeps at once and returns when its context ends.
func TestRunStopsWithItsContext(t *testing.T) {
	t.Parallel()
	f, s := fixture(t, gormtest.Engines(t)[0])
	f.Subjects(storetest.CohortA, "A-1")
	b := f.Issue("batch-a", storetest.CohortA)
	code := f.Codes(b.ID)["A-1"]
	clk := clock.NewFake(b.RedeemBy)
	sw := sweeper.New(sweeper.Config{Store: s, Clock: clk, Log: discard, Owner: "replica-a", Interval: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { sw.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := s.LookupCode(t.Context(), [][]byte{code})
		if err != nil {
			t.Fatal(err)
		}
		if v.Code.State == enrollment.CodeExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not sweep within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if got := wantCounters(t, s, "after Run"); got["cohort-a/code/EXPIRED"] != 1 {
		t.Fatalf("counters after Run = %v", got)
	}
}
