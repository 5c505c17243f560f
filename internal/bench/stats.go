package bench

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseCount reads a row count: a plain integer or one with a k, M or G suffix (powers of
// 1000), e.g. "1000000", "1M", "2.5M", "500k".
func ParseCount(s string) (int64, error) {
	s = strings.TrimSpace(strings.ReplaceAll(s, "_", ""))
	mult := 1.0
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult = 1e3
		case 'm', 'M':
			mult = 1e6
		case 'g', 'G':
			mult = 1e9
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && mult == 1 {
		if n <= 0 {
			return 0, fmt.Errorf("row count must be positive, got %d", n)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a row count (e.g. 1000000, 1M, 500k)", s)
	}
	n := f * mult
	if n < 1 || n > 1e12 || n != math.Trunc(n) {
		return 0, fmt.Errorf("row count must be a positive whole number up to 1e12, got %v", n)
	}
	return int64(n), nil
}

// ParseCounts reads a comma-separated list of row counts, e.g. "1M,2M,5M", which must be
// strictly increasing.
func ParseCounts(s string) ([]int64, error) {
	var out []int64
	for _, part := range strings.Split(s, ",") {
		n, err := ParseCount(part)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, errors.New("row counts must be strictly increasing, e.g. 1M,2M,5M")
		}
		out = append(out, n)
	}
	if len(out) < 2 {
		return nil, errors.New("a series needs at least two row counts, e.g. 1M,5M")
	}
	return out, nil
}

// Point is one measurement of a series: y at x.
type Point struct{ X, Y float64 }

// Slope is the least-squares slope of y over x (with two points, the slope of the line
// through them). It is NaN with fewer than two distinct x.
func Slope(pts []Point) float64 {
	if len(pts) < 2 {
		return math.NaN()
	}
	var mx, my float64
	for _, p := range pts {
		mx += p.X
		my += p.Y
	}
	mx /= float64(len(pts))
	my /= float64(len(pts))
	var sxy, sxx float64
	for _, p := range pts {
		sxy += (p.X - mx) * (p.Y - my)
		sxx += (p.X - mx) * (p.X - mx)
	}
	if sxx == 0 {
		return math.NaN()
	}
	return sxy / sxx
}

// Rate is n per second over d.
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return math.NaN()
	}
	return float64(n) / d.Seconds()
}

// Extrapolate is how long n units take at rate per second.
func Extrapolate(n int64, rate float64) time.Duration {
	if rate <= 0 || math.IsNaN(rate) {
		return 0
	}
	return time.Duration(float64(n) / rate * float64(time.Second))
}

// fmtRate prints a rate with thousands separators and no decimals.
func fmtRate(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return groupThousands(int64(math.Round(r)))
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtMiB prints bytes as MiB with one decimal.
func fmtMiB(b int64) string { return fmt.Sprintf("%.1f", float64(b)/MiB) }

// fmtDur prints a duration rounded for a report: 0.01 s below a minute, then h/m/s.
func fmtDur(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	d = d.Round(time.Second)
	h, m, s := int(d/time.Hour), int(d/time.Minute)%60, int(d/time.Second)%60
	if h > 0 {
		return fmt.Sprintf("%dh%02dm%02ds", h, m, s)
	}
	return fmt.Sprintf("%dm%02ds", m, s)
}

// fmtRows prints a row count compactly when it is round (1M, 500k), in full otherwise.
func fmtRows(n int64) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return fmt.Sprintf("%dM", n/1e6)
	case n >= 1e3 && n%1e3 == 0:
		return fmt.Sprintf("%dk", n/1e3)
	}
	return groupThousands(n)
}
