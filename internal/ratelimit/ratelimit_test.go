package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/clock"
)

func limiters(t *testing.T, clk clock.Clock) map[string]Limiter {
	t.Helper()
	out := map[string]Limiter{"memory": NewMemory(clk)}
	url := os.Getenv("ENROLL_TEST_REDIS_URL")
	if url == "" {
		t.Log("Redis limiter tests skipped: set ENROLL_TEST_REDIS_URL=redis://127.0.0.1:6379/0 to run them")
		return out
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	r, err := NewRedis(context.Background(), url, "test:"+hex.EncodeToString(b[:])+":", clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	out["redis"] = r
	return out
}

func TestBurstThenRefill(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for name, l := range limiters(t, clk) {
		t.Run(name, func(t *testing.T) {
			limit := Limit{Rate: 10, Per: time.Minute, Burst: 5} // one event per 6s, bursts of 5
			for range 10 {
				if d, err := l.Peek(t.Context(), "k", limit); err != nil || !d.Allowed {
					t.Fatalf("peek must not spend: %+v %v", d, err)
				}
			}
			for i := range 5 {
				d, err := l.Allow(t.Context(), "k", limit)
				if err != nil || !d.Allowed {
					t.Fatalf("event %d of the burst denied: %+v %v", i, d, err)
				}
			}
			if d, _ := l.Peek(t.Context(), "k", limit); d.Allowed || d.RetryAfter != 6*time.Second {
				t.Fatalf("peek at an empty budget: %+v", d)
			}
			d, _ := l.Allow(t.Context(), "k", limit)
			if d.Allowed || d.RetryAfter != 6*time.Second {
				t.Fatalf("6th event: %+v, want denied with retry after 6s", d)
			}
			if d, _ := l.Allow(t.Context(), "other", limit); !d.Allowed {
				t.Fatal("keys must not share a budget")
			}
			clk.Advance(6 * time.Second)
			if d, _ := l.Allow(t.Context(), "k", limit); !d.Allowed {
				t.Fatal("one event must be allowed after one interval")
			}
			if d, _ := l.Allow(t.Context(), "k", limit); d.Allowed {
				t.Fatal("only one event refilled")
			}
			clk.Advance(time.Minute)
			for i := range 5 {
				if d, _ := l.Allow(t.Context(), "k", limit); !d.Allowed {
					t.Fatalf("after a full refill, event %d denied", i)
				}
			}
		})
	}
}

func TestRedisDownIsUnavailable(t *testing.T) {
	t.Parallel()
	if _, err := NewRedis(context.Background(), "redis://127.0.0.1:1/0", "x:", clock.Real{}); err == nil {
		t.Fatal("connecting to a closed port must fail")
	}
	url := os.Getenv("ENROLL_TEST_REDIS_URL")
	if url == "" {
		t.Skip("set ENROLL_TEST_REDIS_URL to test a Redis outage after start")
	}
	r, err := NewRedis(context.Background(), url, "down:", clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	_, err = r.Allow(context.Background(), "k", Limit{Rate: 1, Per: time.Second, Burst: 1})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("closed client: %v, want ErrUnavailable", err)
	}
}
