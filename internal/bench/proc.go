package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// MiB is one mebibyte.
const MiB = 1 << 20

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in /proc/PID/stat. It is 100
// on every Linux architecture Go supports (the kernel fixes it for user space whatever HZ is).
const clockTicks = 100

// ProcSample is one reading of a process's memory and CPU use.
type ProcSample struct {
	// RSS is VmRSS: resident memory now, in bytes.
	RSS int64
	// HWM is VmHWM: the peak resident memory over the process's life, in bytes.
	HWM int64
	// CPU is user plus system time consumed so far.
	CPU time.Duration
	// Written is write_bytes of /proc/PID/io: bytes the process caused to be sent to the
	// storage layer (its WAL, checkpoints and database file writes); 0 if unreadable.
	Written int64
}

// ParseProcStatus reads VmRSS and VmHWM, in bytes, from the text of /proc/PID/status.
func ParseProcStatus(r io.Reader) (rss, hwm int64, err error) {
	sc := bufio.NewScanner(r)
	var gotRSS, gotHWM bool
	for sc.Scan() {
		line := sc.Bytes()
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst, gotRSS = &rss, true
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst, gotHWM = &hwm, true
		default:
			continue
		}
		v, err := parseKB(line[6:])
		if err != nil {
			return 0, 0, fmt.Errorf("bad %q: %w", line, err)
		}
		*dst = v
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if !gotRSS || !gotHWM {
		// Kernel threads and zombies have no Vm* lines.
		return 0, 0, errors.New("no VmRSS/VmHWM in status (process exited?)")
	}
	return rss, hwm, nil
}

// parseKB parses "   123456 kB" into bytes.
func parseKB(b []byte) (int64, error) {
	f := bytes.Fields(b)
	if len(f) != 2 || string(f[1]) != "kB" {
		return 0, errors.New("want '<n> kB'")
	}
	n, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a non-negative number of kB")
	}
	return n * 1024, nil
}

// ParseProcStatCPU returns utime+stime from the text of /proc/PID/stat. The command name
// (field 2) is in parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func ParseProcStatCPU(b []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	// After ")": field 3 (state) is the first; utime is field 14, stime field 15.
	f := bytes.Fields(b[end+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("only %d fields after the command name", len(f))
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bad utime/stime: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// ReadProc samples process pid from /proc.
func ReadProc(pid int) (ProcSample, error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, err
	}
	rss, hwm, err := ParseProcStatus(bytes.NewReader(st))
	if err != nil {
		return ProcSample{}, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, err
	}
	cpu, err := ParseProcStatCPU(stat)
	if err != nil {
		return ProcSample{}, err
	}
	// /proc/PID/io needs ptrace rights over the process (ours: a child or ourselves); a
	// kernel without task I/O accounting lacks it, and the sample then reports 0.
	var written int64
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		written, _ = ParseProcIO(io)
	}
	return ProcSample{RSS: rss, HWM: hwm, CPU: cpu, Written: written}, nil
}

// ParseProcIO returns write_bytes from the text of /proc/PID/io.
func ParseProcIO(b []byte) (int64, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("write_bytes:")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("bad write_bytes %q", v)
			}
			return n, nil
		}
	}
	return 0, errors.New("no write_bytes line")
}

// Sampler reads a process's RSS at a fixed interval and keeps the peak. Optionally it writes
// every sample as a CSV line (label, seconds since start, phase, RSS MiB).
type Sampler struct {
	pid   int
	start time.Time
	stop  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	peak    int64
	last    ProcSample
	samples int
	phase   string
	csv     io.Writer
	label   string
}

// StartSampler starts sampling pid every interval until Stop. csv may be nil; its lines start
// with label.
func StartSampler(pid int, interval time.Duration, csv io.Writer, label string) *Sampler {
	s := &Sampler{pid: pid, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}), csv: csv, label: label, phase: "start"}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.Sample()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Sample reads the process now, folds the reading into the peak and returns it. A failed
// read (the process has gone) returns the error and changes nothing.
func (s *Sampler) Sample() (ProcSample, error) {
	p, err := ReadProc(s.pid)
	if err != nil {
		return ProcSample{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = p
	s.samples++
	s.peak = max(s.peak, p.RSS)
	if s.csv != nil {
		fmt.Fprintf(s.csv, "%s,%.3f,%s,%.1f\n", s.label, time.Since(s.start).Seconds(), s.phase, float64(p.RSS)/MiB)
	}
	return p, nil
}

// SetPhase labels the following CSV samples.
func (s *Sampler) SetPhase(phase string) {
	s.mu.Lock()
	s.phase = phase
	s.mu.Unlock()
}

// Peak is the highest VmRSS seen so far, and how many samples were taken.
func (s *Sampler) Peak() (int64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.samples
}

// Last is the most recent successful sample.
func (s *Sampler) Last() ProcSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Stop ends sampling and waits for the sampling goroutine.
func (s *Sampler) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}
