package bench

import (
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"
)

// progress prints a status line to w at most every interval while a phase runs, so a
// 50-minute run shows its rate and ETA.
type progress struct {
	w        io.Writer
	interval time.Duration

	mu    sync.Mutex
	name  string
	total int64
	begin time.Time
	last  time.Time
}

func newProgress(w io.Writer, interval time.Duration) *progress {
	return &progress{w: w, interval: interval}
}

func (p *progress) start(name string, total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.total, p.begin, p.last = name, total, time.Now(), time.Now()
	fmt.Fprintf(p.w, "  %s: %s rows...\n", name, groupThousands(total))
}

// update reports n done; s, if not nil, adds the server's last RSS sample.
func (p *progress) update(n int64, s *Sampler) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < p.interval {
		return
	}
	p.last = time.Now()
	el := time.Since(p.begin)
	rate := Rate(n, el)
	line := fmt.Sprintf("  %s: %s/%s (%.0f%%) %s rows/s", p.name, groupThousands(n), groupThousands(p.total), 100*float64(n)/float64(max(p.total, 1)), fmtRate(rate))
	if n > 0 && n < p.total {
		line += ", ETA " + fmtDur(Extrapolate(p.total-n, rate))
	}
	if s != nil {
		line += ", server RSS " + fmtMiB(s.Last().RSS) + " MiB"
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "  %s: done in %s\n", p.name, fmtDur(time.Since(p.begin)))
}

// selfCPU is this process's user plus system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfMaxRSS is this process's peak resident memory in bytes (Linux reports KiB).
func selfMaxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return int64(ru.Maxrss) * 1024
}

// diskFree reports the free space of the file system holding dir.
func diskFree(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.0f GiB free", float64(st.Bavail)*float64(st.Bsize)/(1<<30))
}
