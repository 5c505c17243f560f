// Package issuance runs code-issuance batches in the background. A batch is durable state
// (its cursor, count and lease live in the database, its code secret wrapped under the master
// key), so the runner can stop at any moment, a kill included, and any replica can pick the
// batch up again and finish it with nothing issued twice and nothing skipped.
package issuance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/idprotect/enroll/internal/clock"
	"github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/requestid"
	"github.com/idprotect/enroll/internal/store"
)

// Config configures a Runner.
type Config struct {
	Store   store.Store
	Keyring *codes.Keyring
	Master  *codes.MasterKey
	Clock   clock.Clock
	Log     *slog.Logger
	// Owner names this worker in batch leases; default host/pid/random.
	Owner string
	// LeaseTTL is how long a claimed batch stays ours without progress; another worker takes
	// it over after that. Default 30s.
	LeaseTTL time.Duration
	// Poll is how often an idle runner looks for batches left by others. Default 5s.
	Poll time.Duration
	// Chunk is how many codes one transaction issues. Default 5000.
	Chunk int
	// Progress, if set, hears about the batches this runner works on (for metrics).
	Progress Progress
}

// Progress is told how far the batches this runner works on have come. Calls for one batch
// come from one goroutine; Stopped follows the last Issued when the runner lets the batch go
// (finished, failed, leased away or shut down).
type Progress interface {
	Issued(b *enrollment.Batch, issued, chunk int64)
	Stopped(b *enrollment.Batch)
}

type noProgress struct{}

func (noProgress) Issued(*enrollment.Batch, int64, int64) {}
func (noProgress) Stopped(*enrollment.Batch)              {}

// Runner issues the codes of RUNNING batches.
type Runner struct {
	cfg  Config
	wake chan struct{}
}

// maxConsecutiveFailures is how many chunks in a row may fail (a database outage, say)
// before the batch is marked FAILED for an operator to look at.
const maxConsecutiveFailures = 5

// New returns a Runner; call Run to start it.
func New(cfg Config) *Runner {
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), requestid.New()[:8])
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.Poll == 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.Chunk == 0 {
		cfg.Chunk = 5000
	}
	if cfg.Progress == nil {
		cfg.Progress = noProgress{}
	}
	return &Runner{cfg: cfg, wake: make(chan struct{}, 1)}
}

// Notify tells the runner a batch was created, so it starts without waiting for its poll.
func (r *Runner) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run works through runnable batches until ctx is cancelled. A batch interrupted by the
// cancellation stays RUNNING and resumes on the next start (here or on another replica).
func (r *Runner) Run(ctx context.Context) {
	for {
		for ctx.Err() == nil {
			b, err := r.cfg.Store.NextRunnableBatch(ctx, r.cfg.Owner, r.cfg.Clock.Now())
			if errors.Is(err, enrollment.ErrNotFound) || ctx.Err() != nil {
				break
			}
			if err != nil {
				r.cfg.Log.Error("issuance: failed to look for batches", "err", err)
				break
			}
			r.runBatch(ctx, b)
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-time.After(r.cfg.Poll):
		}
	}
}

func (r *Runner) runBatch(ctx context.Context, b *enrollment.Batch) {
	log := r.cfg.Log.With("batch", b.ID, "cohort", b.CohortID)
	fail := func(msg string) {
		log.Error("issuance: batch failed", "reason", msg)
		if err := r.cfg.Store.FinishBatch(context.WithoutCancel(ctx), b.ID, enrollment.BatchFailed, msg, r.now()); err != nil {
			log.Error("issuance: failed to record batch failure", "err", err)
		}
	}
	if b.WrappedSecret == nil {
		fail("the batch secret was purged before issuance finished")
		return
	}
	secret, err := r.cfg.Master.Unwrap(b.WrappedSecret, []byte(b.ID))
	if err != nil {
		fail("cannot unwrap the batch secret: is master key " + b.MasterKeyID + " configured?")
		return
	}
	mint, err := Minter(r.cfg.Keyring, b.LookupKeyID, secret)
	if err != nil {
		fail(err.Error())
		return
	}
	log.Info("issuance: working on batch", "issued", b.Issued, "total", b.Total)
	// b.Issued is as of the claim; this runner holds the lease from here on, so its own
	// chunks are the only progress.
	issued := b.Issued
	r.cfg.Progress.Issued(b, issued, 0)
	defer r.cfg.Progress.Stopped(b)
	failures := 0
	for ctx.Err() == nil {
		now := r.now()
		n, err := r.cfg.Store.IssueNext(ctx, b.ID, store.Lease{Owner: r.cfg.Owner, Until: now.Add(r.cfg.LeaseTTL)}, r.cfg.Chunk, now, mint)
		switch {
		case ctx.Err() != nil:
			log.Info("issuance: stopping; the batch resumes on the next start")
			return
		case errors.Is(err, enrollment.ErrFailedPrecondition):
			log.Info("issuance: batch is leased by another worker", "reason", err.Error())
			return
		case err != nil:
			failures++
			log.Error("issuance: chunk failed", "err", err, "consecutive_failures", failures)
			if failures >= maxConsecutiveFailures {
				fail("issuance stopped after repeated storage errors; see the server log, then run IssueCodes again to issue the rest")
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(failures) * time.Second):
			}
			continue
		case n == 0:
			if err := r.cfg.Store.FinishBatch(ctx, b.ID, enrollment.BatchSucceeded, "", r.now()); err != nil {
				log.Error("issuance: failed to finish batch", "err", err)
				return
			}
			log.Info("issuance: batch succeeded")
			return
		}
		failures = 0
		issued += int64(n)
		r.cfg.Progress.Issued(b, issued, int64(n))
	}
}

func (r *Runner) now() time.Time { return r.cfg.Clock.Now().UTC().Truncate(time.Microsecond) }

// Minter returns the store.MintFunc of a batch: the code of (subject, attempt) is derived
// from the batch secret and stored as its HMAC under lookup key keyID.
func Minter(k *codes.Keyring, keyID string, secret []byte) (store.MintFunc, error) {
	probe := codes.Derive(secret, 0, 0)
	if _, err := k.Sum(keyID, probe); err != nil {
		return nil, fmt.Errorf("lookup key %s of the batch is not configured; add it back to ENROLL_LOOKUP_KEYS", keyID)
	}
	return func(subjectID int64, attempt uint32) ([]byte, string) {
		sum, _ := k.Sum(keyID, codes.Derive(secret, subjectID, attempt)) // keyID checked above
		return sum, keyID
	}, nil
}
