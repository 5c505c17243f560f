// Package ratelimit limits how often a key (a client address, a client id, the whole
// service) may do something. It implements GCRA (the generic cell rate algorithm): one
// timestamp per key, smooth refill, bursts up to a limit, and an exact retry-after. The state
// lives in process memory for a single server, or in Redis so that several replicas share one
// budget.
package ratelimit

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/idprotect/enroll/internal/clock"
)

// Limit is Rate events per Per, with bursts of up to Burst.
type Limit struct {
	Rate  int
	Per   time.Duration
	Burst int
}

// interval is the time one event "costs".
func (l Limit) interval() time.Duration { return l.Per / time.Duration(l.Rate) }

// Valid reports whether the limit can be enforced.
func (l Limit) Valid() bool { return l.Rate > 0 && l.Per > 0 && l.Burst > 0 }

// Decision is the outcome of one Allow call.
type Decision struct {
	Allowed bool
	// RetryAfter is how long to wait before the next event would be allowed (0 if allowed).
	RetryAfter time.Duration
}

// Limiter decides whether key may spend one event under limit now.
type Limiter interface {
	// Allow spends one event if the budget allows it.
	Allow(ctx context.Context, key string, limit Limit) (Decision, error)
	// Peek says whether an event would be allowed, without spending it: for budgets that
	// only failures consume (a wrong code costs, a right one does not).
	Peek(ctx context.Context, key string, limit Limit) (Decision, error)
}

// ErrUnavailable wraps failures of a shared limiter's backend. Callers choose: public
// endpoints fail closed (deny), internal quotas may fail open.
var ErrUnavailable = errors.New("rate limiter unavailable")

// gcra computes the new theoretical arrival time of key given the stored one (zero if none).
func gcra(now, tat time.Time, l Limit) (newTAT time.Time, d Decision) {
	iv := l.interval()
	if tat.Before(now) {
		tat = now
	}
	newTAT = tat.Add(iv)
	allowAt := newTAT.Add(-iv * time.Duration(l.Burst))
	if now.Before(allowAt) {
		return tat, Decision{Allowed: false, RetryAfter: allowAt.Sub(now)}
	}
	return newTAT, Decision{Allowed: true}
}

// Memory is an in-process limiter. It forgets keys whose budget has fully refilled, so its
// size is bounded by the keys active within one refill period.
type Memory struct {
	clock clock.Clock
	mu    sync.Mutex
	tat   map[string]time.Time
	sweep time.Time
}

// NewMemory returns an in-process limiter on clk.
func NewMemory(clk clock.Clock) *Memory {
	return &Memory{clock: clk, tat: map[string]time.Time{}}
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, l Limit) (Decision, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.sweep) > time.Minute {
		for k, t := range m.tat {
			if t.Before(now) {
				delete(m.tat, k)
			}
		}
		m.sweep = now
	}
	newTAT, d := gcra(now, m.tat[key], l)
	m.tat[key] = newTAT
	return d, nil
}

// Peek implements Limiter.
func (m *Memory) Peek(_ context.Context, key string, l Limit) (Decision, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	_, d := gcra(now, m.tat[key], l)
	return d, nil
}
