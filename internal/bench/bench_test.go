package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

const statusSample = `Name:	enrolld
Umask:	0022
State:	S (sleeping)
Tgid:	4242
VmPeak:	 1990000 kB
VmSize:	 1980000 kB
VmLck:	       0 kB
VmHWM:	  123456 kB
VmRSS:	   65536 kB
RssAnon:	   40000 kB
Threads:	9
`

func TestParseProcStatus(t *testing.T) {
	t.Parallel()
	rss, hwm, err := ParseProcStatus(strings.NewReader(statusSample))
	if err != nil {
		t.Fatal(err)
	}
	if rss != 65536*1024 || hwm != 123456*1024 {
		t.Fatalf("rss=%d hwm=%d, want %d %d", rss, hwm, 65536*1024, 123456*1024)
	}
}

func TestParseProcStatusErrors(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"zombie (no Vm lines)": "Name:\tenrolld\nState:\tZ (zombie)\n",
		"no HWM":               "VmRSS:\t 10 kB\n",
		"bad unit":             "VmHWM:\t 10 kB\nVmRSS:\t 10 MB\n",
		"bad number":           "VmHWM:\t 10 kB\nVmRSS:\t ten kB\n",
		"negative":             "VmHWM:\t 10 kB\nVmRSS:\t -1 kB\n",
	} {
		if _, _, err := ParseProcStatus(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseProcStatCPU(t *testing.T) {
	t.Parallel()
	// The command name may hold spaces and parentheses; utime=250, stime=50 ticks.
	stat := "4242 (enroll (d) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 2000000 16000 18446744073709551615\n"
	got, err := ParseProcStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Second {
		t.Fatalf("cpu = %s, want 3s", got)
	}
	for _, bad := range []string{"4242 enrolld S 1", "4242 (enrolld) S 1 2 3", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 x y"} {
		if _, err := ParseProcStatCPU([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestReadProcSelf(t *testing.T) {
	t.Parallel()
	s := StartSampler(pidSelf(), 10*time.Millisecond, nil, "")
	time.Sleep(30 * time.Millisecond)
	s.Stop()
	peak, n := s.Peak()
	last := s.Last()
	if n < 1 || peak <= 0 || last.RSS <= 0 || last.HWM < last.RSS {
		t.Fatalf("peak=%d samples=%d last=%+v", peak, n, last)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("reading a process that does not exist must fail")
	}
}

func TestParseCount(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"1000000": 1e6, "1M": 1e6, "2.5M": 2.5e6, "500k": 5e5, "10_000": 1e4, " 3 ": 3, "1G": 1e9} {
		got, err := ParseCount(in)
		if err != nil || got != want {
			t.Errorf("ParseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-5", "1.5", "M", "abc", "1.0000001k"} {
		if n, err := ParseCount(in); err == nil {
			t.Errorf("ParseCount(%q) = %d, want an error", in, n)
		}
	}
}

func TestParseCounts(t *testing.T) {
	t.Parallel()
	got, err := ParseCounts("1M,2M,5M")
	if err != nil || len(got) != 3 || got[0] != 1e6 || got[2] != 5e6 {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, in := range []string{"1M", "2M,1M", "1M,1M", "1M,x"} {
		if _, err := ParseCounts(in); err == nil {
			t.Errorf("ParseCounts(%q): no error", in)
		}
	}
}

func TestSlope(t *testing.T) {
	t.Parallel()
	// Exactly on y = 2x + 60: slope 2.
	if s := Slope([]Point{{1, 62}, {2, 64}, {5, 70}}); math.Abs(s-2) > 1e-9 {
		t.Errorf("slope = %v, want 2", s)
	}
	// Flat memory: slope 0.
	if s := Slope([]Point{{1, 80}, {5, 80}}); s != 0 {
		t.Errorf("slope = %v, want 0", s)
	}
	// Least squares through noisy points.
	if s := Slope([]Point{{1, 1}, {2, 3}, {3, 2}}); math.Abs(s-0.5) > 1e-9 {
		t.Errorf("slope = %v, want 0.5", s)
	}
	if !math.IsNaN(Slope([]Point{{1, 1}})) || !math.IsNaN(Slope([]Point{{1, 1}, {1, 2}})) {
		t.Error("a slope needs two distinct x")
	}
}

func TestRateAndExtrapolate(t *testing.T) {
	t.Parallel()
	if r := Rate(1000, 2*time.Second); r != 500 {
		t.Errorf("rate = %v", r)
	}
	if !math.IsNaN(Rate(1, 0)) {
		t.Error("rate over zero time must be NaN")
	}
	if d := Extrapolate(50_000_000, 25_000); d != 2000*time.Second {
		t.Errorf("extrapolate = %s", d)
	}
	if d := Extrapolate(1, math.NaN()); d != 0 {
		t.Errorf("extrapolate at an unknown rate = %s", d)
	}
}

func TestFormatting(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		groupThousands(0):               "0",
		groupThousands(999):             "999",
		groupThousands(1234567):         "1,234,567",
		groupThousands(-1234):           "-1,234",
		fmtRate(24999.6):                "25,000",
		fmtRate(math.NaN()):             "n/a",
		fmtMiB(256 * MiB):               "256.0",
		fmtDur(1500 * time.Millisecond): "1.50 s",
		fmtDur(125 * time.Second):       "2m05s",
		fmtDur(3723 * time.Second):      "1h02m03s",
		fmtRows(1_000_000):              "1M",
		fmtRows(500_000):                "500k",
		fmtRows(1_234_567):              "1,234,567",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestWithSearchPath(t *testing.T) {
	t.Parallel()
	got, err := WithSearchPath("postgres://u:p@127.0.0.1:5432/db?sslmode=disable", "bench_x")
	if err != nil {
		t.Fatal(err)
	}
	if got != "postgres://u:p@127.0.0.1:5432/db?search_path=bench_x&sslmode=disable" {
		t.Fatalf("got %s", got)
	}
	for _, bad := range []string{"host=127.0.0.1 user=u", "mysql://x/y", "::"} {
		if _, err := WithSearchPath(bad, "s"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestMaskPassword(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://enroll:secret@127.0.0.1:5432/db": "postgres://enroll:***@127.0.0.1:5432/db",
		"postgres://enroll@127.0.0.1/db":             "postgres://enroll@127.0.0.1/db",
		"postgres://127.0.0.1/db":                    "postgres://127.0.0.1/db",
	} {
		if got := maskPassword(in); got != want {
			t.Errorf("maskPassword(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMultiInsert(t *testing.T) {
	t.Parallel()
	got := multiInsert("subject_cohorts", memberCols, 2)
	want := "INSERT INTO subject_cohorts (incident_id, cohort_id, subject_id) VALUES (?,?,?),(?,?,?)"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestParseIssueFlags(t *testing.T) {
	var sink strings.Builder
	o, err := parseIssueFlags([]string{"--rows", "2M"}, &sink)
	if err != nil || o.rows != 2e6 || o.engine != "sqlite" || o.rawChunk != 10000 || o.skipRaw {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	o, err = parseIssueFlags([]string{"--rss-series", "1M,5M"}, &sink)
	if err != nil || len(o.series) != 2 || !o.skipRaw {
		t.Fatalf("series: %+v, %v", o, err)
	}
	o, err = parseIssueFlags([]string{"--engine", "postgres", "--postgres-dsn", "postgres://u@h/db"}, &sink)
	if err != nil || o.rawChunk != 50000 {
		t.Fatalf("postgres: %+v, %v", o, err)
	}
	for _, args := range [][]string{
		{"--rows", "0"},
		{"--engine", "mysql"},
		{"--engine", "postgres", "--postgres-dsn", "host=x"},
		{"--rss-series", "5M,1M"},
		{"--raw-stmt-rows", "0"},
		{"extra"},
	} {
		if _, err := parseIssueFlags(args, &sink); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	t.Setenv("ENROLL_TEST_POSTGRES_DSN", "")
	if _, err := parseIssueFlags([]string{"--engine", "postgres"}, &sink); err == nil || !strings.Contains(err.Error(), "--postgres-dsn") {
		t.Errorf("postgres without a DSN: %v", err)
	}
}

func TestMainUsage(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := Main(t.Context(), nil, &out, &out); err == nil {
		t.Fatal("no command must fail")
	}
	if err := Main(t.Context(), []string{"redeem"}, &out, &out); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
	if !strings.Contains(out.String(), "usage: enrollbench issue") {
		t.Fatal("usage not printed")
	}
}

func TestParseProcIO(t *testing.T) {
	t.Parallel()
	in := "rchar: 6976\nwchar: 10\nsyscr: 10\nsyscw: 0\nread_bytes: 4096\nwrite_bytes: 8192000\ncancelled_write_bytes: 0\n"
	n, err := ParseProcIO([]byte(in))
	if err != nil || n != 8192000 {
		t.Fatalf("got %d, %v", n, err)
	}
	for _, bad := range []string{"rchar: 1\n", "write_bytes: x\n", "write_bytes: -1\n"} {
		if _, err := ParseProcIO([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
