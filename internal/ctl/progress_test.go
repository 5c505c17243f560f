package ctl

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestProgressLines(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	at := func(total, base int64) *progress {
		return &progress{w: io.Discard, what: "x", total: total, base: base, start: t0, last: t0}
	}
	tests := []struct {
		name string
		line string
		want string
	}{
		{"count with total", at(1000, 0).countLine(250, 0, t0.Add(10*time.Second)), "x: 250/1000 (25.0%) 25/s ETA 30s"},
		{"rate counts from base", at(1000, 200).countLine(300, 0, t0.Add(10*time.Second)), "x: 300/1000 (30.0%) 10/s ETA 1m10s"},
		{"rate from elsewhere wins", at(1000, 0).countLine(500, 50, t0.Add(time.Second)), "x: 500/1000 (50.0%) 50/s ETA 10s"},
		{"nothing yet", at(1000, 0).countLine(0, 0, t0.Add(time.Second)), "x: 0/1000 (0.0%) ETA ?"},
		{"finished before watched", at(243, 243).countLine(243, 0, t0.Add(time.Second)), "x: 243/243 (100.0%) ETA 0s"},
		{"no total", at(0, 0).countLine(40, 0, t0.Add(2*time.Second)), "x: 40 20/s"},
		{"file half read", at(0, 0).fileLine(5000, 50, 100, t0.Add(10*time.Second)), "x: 5000 rows 500 rows/s, 50.0% of file, ETA 10s"},
		{"file not yet read", at(0, 0).fileLine(0, 0, 100, t0.Add(time.Second)), "x: 0 rows 0 rows/s, 0.0% of file, ETA ?"},
		{"read past size (buffering)", at(0, 0).fileLine(10, 120, 100, t0.Add(time.Second)), "x: 10 rows 10 rows/s, 100.0% of file, ETA 0s"},
		{"pipe: no size", at(0, 0).fileLine(10, 120, 0, t0.Add(time.Second)), "x: 10 rows 10 rows/s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.line != tc.want {
				t.Fatalf("got  %q\nwant %q", tc.line, tc.want)
			}
		})
	}
}

func TestProgressAtMostOnceASecond(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	p := &progress{last: t0}
	for _, c := range []struct {
		after time.Duration
		want  bool
	}{{0, false}, {999 * time.Millisecond, false}, {time.Second, true}, {1500 * time.Millisecond, false}, {2 * time.Second, true}} {
		if got := p.due(t0.Add(c.after)); got != c.want {
			t.Fatalf("due after %v = %v, want %v", c.after, got, c.want)
		}
	}
}

func TestProgressDoneDoesNotRepeatTheLastLine(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	p := newProgress(&b, "x", 10)
	p.last = p.last.Add(-2 * time.Second) // a line is due
	p.update(10)
	p.done(10)
	if n := strings.Count(b.String(), "\n"); n != 1 {
		t.Fatalf("%d lines for one count, want 1:\n%s", n, b.String())
	}
	q := newProgress(&b, "y", 10)
	q.done(0)
	if !strings.Contains(b.String(), "y: 0/10") {
		t.Fatalf("done printed nothing without an earlier line:\n%s", b.String())
	}
}
