package ctl

import (
	"fmt"
	"io"
	"time"
)

// progress prints a line with count, rate and ETA at most once a second: readable in a
// terminal and in a CI log alike.
type progress struct {
	w     io.Writer
	what  string
	total int64
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, what string, total int64) *progress {
	now := time.Now()
	return &progress{w: w, what: what, total: total, start: now, last: now}
}

func (p *progress) update(n int64) {
	now := time.Now()
	if now.Sub(p.last) < time.Second {
		return
	}
	p.last = now
	p.print(n, now)
}

func (p *progress) print(n int64, now time.Time) {
	el := now.Sub(p.start).Seconds()
	rate := float64(n) / max(el, 1e-9)
	line := fmt.Sprintf("%s: %d", p.what, n)
	if p.total > 0 {
		pct := float64(n) * 100 / float64(p.total)
		eta := "?"
		if rate > 0 {
			eta = (time.Duration(float64(p.total-n)/rate) * time.Second).Round(time.Second).String()
		}
		line = fmt.Sprintf("%s: %d/%d (%.1f%%) %.0f/s ETA %s", p.what, n, p.total, pct, rate, eta)
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) done(n int64) {
	p.print(n, time.Now())
}
