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
	// base is the count when the clock started: a batch already half issued when we begin
	// to watch it must not show the server's earlier work as our rate.
	base  int64
	start time.Time
	last  time.Time
	// shown is the count on the last line printed, so done does not repeat it.
	shown   int64
	printed bool
}

func newProgress(w io.Writer, what string, total int64) *progress {
	return newProgressFrom(w, what, total, 0)
}

func newProgressFrom(w io.Writer, what string, total, base int64) *progress {
	now := time.Now()
	return &progress{w: w, what: what, total: total, base: base, start: now, last: now}
}

// due reports whether a second passed since the last line, and if so restarts the wait.
func (p *progress) due(now time.Time) bool {
	if now.Sub(p.last) < time.Second {
		return false
	}
	p.last = now
	return true
}

func (p *progress) update(n int64) { p.updateRate(n, 0) }

// updateRate is update with a rate measured elsewhere, e.g. by the server over the whole
// batch; 0 means measure it here.
func (p *progress) updateRate(n int64, rate float64) {
	if now := time.Now(); p.due(now) {
		p.print(p.countLine(n, rate, now), n)
	}
}

func (p *progress) done(n int64) { p.doneRate(n, 0) }

func (p *progress) doneRate(n int64, rate float64) {
	if !p.printed || p.shown != n {
		p.print(p.countLine(n, rate, time.Now()), n)
	}
}

func (p *progress) print(line string, n int64) {
	fmt.Fprintln(p.w, line)
	p.shown, p.printed = n, true
}

func (p *progress) rate(n int64, now time.Time) float64 {
	return float64(n-p.base) / max(now.Sub(p.start).Seconds(), 1e-9)
}

func (p *progress) countLine(n int64, rate float64, now time.Time) string {
	if rate <= 0 {
		rate = p.rate(n, now)
	}
	speed := ""
	if rate > 0 {
		speed = fmt.Sprintf(" %.0f/s", rate)
	}
	if p.total <= 0 {
		return fmt.Sprintf("%s: %d%s", p.what, n, speed)
	}
	pct := float64(n) * 100 / float64(p.total)
	eta := "?"
	switch {
	case n >= p.total:
		eta = "0s"
	case rate > 0:
		eta = roundETA(float64(p.total-n) / rate)
	}
	return fmt.Sprintf("%s: %d/%d (%.1f%%)%s ETA %s", p.what, n, p.total, pct, speed, eta)
}

// updateFile is update for rows read from a file whose row count is unknown until the end:
// the ETA comes from the share of its size bytes consumed so far (read).
func (p *progress) updateFile(rows, read, size int64) {
	if now := time.Now(); p.due(now) {
		p.print(p.fileLine(rows, read, size, now), rows)
	}
}

// doneFile prints the final line of a file: the rows and the average rate.
func (p *progress) doneFile(rows int64) {
	now := time.Now()
	fmt.Fprintf(p.w, "%s: %d rows in %s, %.0f rows/s\n", p.what, rows, now.Sub(p.start).Round(time.Millisecond), p.rate(rows, now))
}

func (p *progress) fileLine(rows, read, size int64, now time.Time) string {
	el := max(now.Sub(p.start).Seconds(), 1e-9)
	line := fmt.Sprintf("%s: %d rows %.0f rows/s", p.what, rows, p.rate(rows, now))
	if size <= 0 {
		return line // a pipe or an empty file: no size to measure against
	}
	read = min(read, size)
	eta := "?"
	if read > 0 {
		eta = roundETA(el * float64(size-read) / float64(read))
	}
	return fmt.Sprintf("%s, %.1f%% of file, ETA %s", line, float64(read)*100/float64(size), eta)
}

func roundETA(seconds float64) string {
	return (time.Duration(seconds * float64(time.Second))).Round(time.Second).String()
}
