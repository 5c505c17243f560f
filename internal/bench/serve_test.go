package bench

import (
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/idprotect/enroll/internal/store/gormstore"
)

// TestServeSQLite runs the whole tool on a tiny load: enrolld built and started for real,
// the bare server as a subprocess, both transports.
func TestServeSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts enrolld; skipped in -short mode")
	}
	var out, errs strings.Builder
	o, err := parseServeFlags([]string{"--subjects", "8000", "--clients", "2", "--duration", "1s", "--warmup", "200ms", "--dir", t.TempDir()}, &errs)
	if err != nil {
		t.Fatal(err)
	}
	if err := runServe(t.Context(), o, &out, &errs); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errs.String())
	}
	report := out.String()
	row := regexp.MustCompile(`(?m)^\| 1 \| (ours|bare-store|bare-min) \| (gRPC|REST) \| ([0-9,]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| 0 \|$`)
	rows := row.FindAllStringSubmatch(report, -1)
	if len(rows) != 6 {
		t.Fatalf("want 6 clean phase rows, got %d:\n%s", len(rows), report)
	}
	for _, r := range rows {
		ops, _ := strconv.Atoi(strings.ReplaceAll(r[3], ",", ""))
		p50, _ := strconv.ParseFloat(r[4], 64)
		p99, _ := strconv.ParseFloat(r[5], 64)
		if ops <= 0 || p50 <= 0 || p99 < p50 {
			t.Errorf("%s %s: ops/s %d, redeem p50 %v p99 %v", r[1], r[2], ops, p50, p99)
		}
	}
	for _, want := range []string{"ours/bare-store gRPC: ", "ours/bare-store REST: ", "ours/bare-min (reference", "Load average", "The load generator (enrollbench, same machine) used, in cores: 1 ours gRPC ", "Command: `go run ./cmd/enrollbench serve --engine sqlite"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "WARNING") {
		t.Errorf("report has a warning:\n%s", report)
	}
}

// TestBareServer checks that the baseline does the work it claims: every completed operation
// leaves an ACTIVE enrollment and a REDEEMED code, a code redeems once, and a phase that
// runs out of codes says so.
func TestBareServer(t *testing.T) {
	ctx := t.Context()
	sec, err := NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bare.db")
	tgt := dbTarget{driver: gormstore.DriverSQLite, dsn: path, path: path}
	plain, err := preloadBare(ctx, tgt, sec, 1500)
	if err != nil {
		t.Fatal(err)
	}
	bp, err := startBare(ctx, tgt.driver, tgt.dsn, bareMinimal, sec, filepath.Join(t.TempDir(), "bare.log"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Kill()
	pool := &codePool{codes: plain}
	for _, tr := range []string{"gRPC", "REST"} {
		tg := &serveTarget{grpcAddr: bp.GRPCAddr, httpAddr: bp.HTTPAddr, pool: pool, token: "unused"}
		res, err := runPhase(ctx, phaseSpec{name: "bare " + tr, clients: 2, duration: 300 * time.Millisecond, newCaller: tg.callerFactory(tr), pool: pool, serverPID: bp.PID()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors != 0 || res.Ops == 0 {
			t.Fatalf("%s: ops %d errors %d %v", tr, res.Ops, res.Errors, res.ErrKinds)
		}
	}
	// Drain the rest: the phase ends when the codes do, well before its minute.
	tg := &serveTarget{grpcAddr: bp.GRPCAddr, pool: pool, token: "unused"}
	res, err := runPhase(ctx, phaseSpec{name: "bare gRPC", clients: 2, duration: time.Minute, newCaller: tg.callerFactory("gRPC"), pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OutOfCodes || res.Elapsed >= time.Minute || res.Errors != 0 {
		t.Fatalf("draining phase: out of codes %v, elapsed %s, errors %d", res.OutOfCodes, res.Elapsed, res.Errors)
	}

	c, err := newGRPCCaller(bp.GRPCAddr, "unused")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.redeem(ctx, plain[0]); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second redemption of a code: %v, want AlreadyExists", err)
	}
	if _, err := c.redeem(ctx, "not-a-code"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed code: %v, want InvalidArgument", err)
	}
	if err := bp.Stop(); err != nil {
		t.Fatal(err)
	}

	st, err := gormstore.Open(context.WithoutCancel(ctx), gormstore.Config{Driver: tgt.driver, DSN: tgt.dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db, _ := st.DB().DB()
	var redeemed, active, pending int
	if err := db.QueryRow(`SELECT count(*) FROM codes WHERE state = 'REDEEMED' AND redeem_time IS NOT NULL`).Scan(&redeemed); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM enrollments WHERE state = 'ACTIVE' AND member_id IS NOT NULL AND coverage_end > activate_time`).Scan(&active); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM enrollments WHERE state = 'PENDING'`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	// Every code was taken; a client stopped between its two calls leaves a PENDING one.
	if redeemed != len(plain) || active+pending != len(plain) || pending > 2*3 {
		t.Fatalf("redeemed %d active %d pending %d of %d codes", redeemed, active, pending, len(plain))
	}
}

func TestParseServeFlags(t *testing.T) {
	var sink strings.Builder
	o, err := parseServeFlags(nil, &sink)
	if err != nil || o.subjects != 150000 || o.clients != 16 || o.duration != 20*time.Second || o.rounds != 1 || o.engine != "sqlite" {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	for _, args := range [][]string{
		{"--clients", "0"},
		{"--duration", "0s"},
		{"--rounds", "0"},
		{"--subjects", "x"},
		{"--engine", "mysql"},
		{"extra"},
	} {
		if _, err := parseServeFlags(args, &sink); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestPercentileAndMedian(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(d, 0.5); p != 50*time.Millisecond {
		t.Errorf("p50 = %s", p)
	}
	if p := percentile(d, 0.99); p != 99*time.Millisecond {
		t.Errorf("p99 = %s", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Errorf("empty p50 = %s", p)
	}
	if m := median([]float64{0.9, 0.5, 0.7}); m != 0.7 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{0.4, 0.6}); m != 0.5 {
		t.Errorf("median = %v", m)
	}
}
