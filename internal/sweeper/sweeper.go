// Package sweeper makes deadlines durable. Reads already report the right state past a
// deadline; the sweeper records it (codes past redeem-by → EXPIRED, PENDING enrollments past
// the activation window → LAPSED, ACTIVE ones past coverage end → EXPIRED), emits the
// enrollment.expiring notice once, and purges old idempotency records. It works in bounded
// transactions under a database lease, so with several replicas one sweeps at a time and
// another takes over if it dies.
package sweeper

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/idprotect/enroll/internal/clock"
	"github.com/idprotect/enroll/internal/requestid"
	"github.com/idprotect/enroll/internal/store"
)

// LeaseName is the sweeper's lease in the leases table.
const LeaseName = "sweeper"

// ExpiringNotice is how long before coverage ends the enrollment.expiring event goes out.
const ExpiringNotice = 30 * 24 * time.Hour

// Config configures a Sweeper.
type Config struct {
	Store store.Store
	Clock clock.Clock
	Log   *slog.Logger
	// Owner names this replica in the lease; default host/pid/random.
	Owner string
	// Interval between sweeps. Default 1 minute.
	Interval time.Duration
	// Batch is how many rows one transaction changes. Default 5000.
	Batch int
}

// Sweeper runs sweeps periodically.
type Sweeper struct{ cfg Config }

// New returns a Sweeper.
func New(cfg Config) *Sweeper {
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), requestid.New()[:8])
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Batch == 0 {
		cfg.Batch = 5000
	}
	return &Sweeper{cfg: cfg}
}

// Run sweeps every Interval until ctx is cancelled.
func (s *Sweeper) Run(ctx context.Context) {
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Log.Error("sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Interval):
		}
	}
}

// Result counts what one sweep did.
type Result struct {
	CodesExpired, EnrollmentsEnded, ExpiringNotices, IdempotencyPurged int
	// Skipped is true if another replica holds the sweep lease.
	Skipped bool
}

// Sweep runs one full sweep if it can take the lease.
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	var r Result
	now := s.cfg.Clock.Now().UTC().Truncate(time.Microsecond)
	// The lease outlives one sweep step comfortably and is renewed between steps.
	lease := func() (bool, error) {
		return s.cfg.Store.ClaimLease(ctx, LeaseName, s.cfg.Owner, s.cfg.Clock.Now(), s.cfg.Clock.Now().Add(2*time.Minute))
	}
	ok, err := lease()
	if err != nil {
		return r, fmt.Errorf("failed to claim the sweep lease: %w", err)
	}
	if !ok {
		r.Skipped = true
		return r, nil
	}
	defer func() { _ = s.cfg.Store.ReleaseLease(context.WithoutCancel(ctx), LeaseName, s.cfg.Owner) }()
	steps := []struct {
		name string
		dst  *int
		run  func() (int, error)
	}{
		{"codes", &r.CodesExpired, func() (int, error) { return s.cfg.Store.SweepCodes(ctx, now, s.cfg.Batch) }},
		{"enrollments", &r.EnrollmentsEnded, func() (int, error) { return s.cfg.Store.SweepEnrollments(ctx, now, s.cfg.Batch) }},
		{"expiring", &r.ExpiringNotices, func() (int, error) { return s.cfg.Store.SweepExpiring(ctx, now, ExpiringNotice, s.cfg.Batch) }},
		{"idempotency", &r.IdempotencyPurged, func() (int, error) { return s.cfg.Store.PurgeIdempotencyKeys(ctx, now, s.cfg.Batch) }},
	}
	for _, st := range steps {
		for {
			n, err := st.run()
			if err != nil {
				return r, fmt.Errorf("sweep %s: %w", st.name, err)
			}
			*st.dst += n
			if n < s.cfg.Batch {
				break
			}
			if ok, err := lease(); err != nil || !ok {
				return r, fmt.Errorf("lost the sweep lease during %s: %v", st.name, err)
			}
		}
	}
	if r != (Result{}) {
		s.cfg.Log.Info("sweep", "codes_expired", r.CodesExpired, "enrollments_ended", r.EnrollmentsEnded,
			"expiring_notices", r.ExpiringNotices, "idempotency_purged", r.IdempotencyPurged)
	}
	return r, nil
}
