package main

// The process harness: the real enrolld binary, built once per test run, started as a child
// process in production mode with fixed secrets, on free loopback ports and a fresh database
// of each engine gormtest offers. Tests SIGKILL it, SIGTERM it and start it again with the
// same environment, the way an operator or an orchestrator would.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// enrolldBinary builds this package (the real main) once per test run and returns its path.
// `go test` runs tests in the package directory and puts its own go first on PATH.
func enrolldBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		began := time.Now()
		if build.dir, build.err = os.MkdirTemp("", "enrolld-process-test-"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "enrolld")
		out, err := exec.Command("go", "build", "-o", build.bin, ".").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build of enrolld failed: %v\n%s", err, out)
			return
		}
		t.Logf("built enrolld in %v", time.Since(began).Round(time.Millisecond))
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// forEachEngine runs fn as a parallel subtest per database engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, e gormtest.Engine)) {
	t.Helper()
	for _, e := range gormtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, e)
		})
	}
}

// daemon is one deployment of enrolld: a database, fixed secrets and flags, and at most one
// running process at a time. Every start reuses the environment, so a restarted process can
// unwrap the batch secrets and verify the codes the previous one made.
type daemon struct {
	t           *testing.T
	db          gormstore.Config
	bin         string
	env         []string
	flags       []string
	adminSecret string
	logDir      string
	starts      int

	// The current (or last) process.
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	logPath  string
	grpcAddr string
	conn     *grpc.ClientConn
	token    string

	admin     enrollv1.AdminServiceClient
	redeem    enrollv1.RedemptionServiceClient
	reporting enrollv1.ReportingServiceClient
}

// newDaemon prepares a deployment on a fresh database of engine e; flags are added to every
// start. Nothing runs until start.
func newDaemon(t *testing.T, e gormtest.Engine, flags ...string) *daemon {
	t.Helper()
	jwtKey, err := auth.GenerateSigningKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		t: t, db: e.Config(t), bin: enrolldBinary(t), flags: flags,
		adminSecret: "bootstrap-" + random32(t), logDir: t.TempDir(),
	}
	// The child gets the parent's environment minus every ENROLL_* setting (so nothing from
	// the developer's shell leaks in), plus the production secrets.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ENROLL_") {
			d.env = append(d.env, kv)
		}
	}
	d.env = append(d.env,
		"ENROLL_LOOKUP_KEYS=lk1:"+random32(t),
		"ENROLL_MASTER_KEY=mk1:"+random32(t),
		"ENROLL_IDENTITY_KEY="+random32(t),
		"ENROLL_JWT_KEYS="+auth.EncodeSigningKey(jwtKey),
		"ENROLL_BOOTSTRAP_ADMIN_SECRET="+d.adminSecret,
	)
	d.cleanup()
	return d
}

// replica is a second deployment of d's database with d's secrets and flags: another
// replica of one service, as an orchestrator would run it. extra flags apply to it alone.
func (d *daemon) replica(extra ...string) *daemon {
	r := &daemon{
		t: d.t, db: d.db, bin: d.bin, env: d.env, flags: append(slices.Clone(d.flags), extra...),
		adminSecret: d.adminSecret, logDir: d.t.TempDir(),
	}
	r.cleanup()
	return r
}

func (d *daemon) cleanup() {
	t := d.t
	t.Cleanup(func() {
		if d.running() {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		if d.conn != nil {
			_ = d.conn.Close()
		}
		if t.Failed() {
			t.Logf("last lines of %s (successful calls left out):\n%s", d.logPath, tail(d.log(), 40))
		}
	})
}

// start runs a new enrolld process on fresh loopback ports and waits until gRPC health says
// SERVING, then connects the clients and fetches an admin token. extra flags apply to this
// start only.
func (d *daemon) start(extra ...string) {
	d.t.Helper()
	d.launch(extra...)
	d.ready()
}

// launch runs a new enrolld process on fresh loopback ports and connects the clients,
// without waiting for it to serve: replicas launched together migrate at the same time.
func (d *daemon) launch(extra ...string) {
	t := d.t
	t.Helper()
	if d.running() {
		t.Fatal("start: enrolld is already running")
	}
	d.starts++
	d.grpcAddr = freeAddr(t)
	args := []string{
		"--grpc-addr", d.grpcAddr, "--http-addr", freeAddr(t),
		"--db-driver", d.db.Driver, "--db-dsn", d.db.DSN, "--log-level", "info",
	}
	if d.db.MaxOpenConns > 0 {
		args = append(args, "--db-max-open-conns", fmt.Sprint(d.db.MaxOpenConns))
	}
	args = append(append(args, d.flags...), extra...)
	d.logPath = filepath.Join(d.logDir, fmt.Sprintf("enrolld-%d.log", d.starts))
	logFile, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child holds its own descriptor
	d.cmd = exec.Command(d.bin, args...)
	d.cmd.Env, d.cmd.Stdout, d.cmd.Stderr = d.env, logFile, logFile
	d.cmd.SysProcAttr = childAttrs()
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start enrolld: %v", err)
	}
	d.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		d.waitErr = cmd.Wait()
		close(exited)
	}(d.cmd, d.exited)

	if d.conn != nil {
		_ = d.conn.Close()
	}
	d.conn, err = grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.admin = enrollv1.NewAdminServiceClient(d.conn)
	d.redeem = enrollv1.NewRedemptionServiceClient(d.conn)
	d.reporting = enrollv1.NewReportingServiceClient(d.conn)
}

// ready waits until the launched process is SERVING and fetches an admin token.
func (d *daemon) ready() {
	t := d.t
	t.Helper()
	d.waitServing(60 * time.Second)
	resp, err := enrollv1.NewAuthServiceClient(d.conn).Token(context.Background(), &enrollv1.TokenRequest{
		GrantType: "client_credentials", ClientId: "admin", ClientSecret: d.adminSecret,
	})
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	d.token = resp.GetAccessToken()
}

func (d *daemon) waitServing(limit time.Duration) {
	t := d.t
	t.Helper()
	health := healthpb.NewHealthClient(d.conn)
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("enrolld exited during start-up (%v); log:\n%s", d.waitErr, d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("enrolld not SERVING after %v (last: %v); log:\n%s", limit, err, tail(d.log(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) running() bool {
	if d.exited == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone: no deferred function, no
// shutdown hook, no transaction commit runs.
func (d *daemon) kill() {
	d.t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		d.t.Fatalf("SIGKILL: %v", err)
	}
	<-d.exited
}

// term sends SIGTERM and waits up to limit for the process to exit. It returns the exit
// code and how long the exit took; a process still running after limit fails t.
func (d *daemon) term(limit time.Duration) (int, time.Duration) {
	d.t.Helper()
	began := time.Now()
	d.signal(syscall.SIGTERM)
	code := d.waitExit(limit)
	return code, time.Since(began)
}

func (d *daemon) signal(sig syscall.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits up to limit for the process to exit and returns its exit code.
func (d *daemon) waitExit(limit time.Duration) int {
	d.t.Helper()
	select {
	case <-d.exited:
	case <-time.After(limit):
		d.t.Fatalf("enrolld still running %v after it was told to stop; log:\n%s", limit, tail(d.log(), 40))
	}
	return d.cmd.ProcessState.ExitCode()
}

// getenv reads the deployment's environment (its secrets included).
func (d *daemon) getenv(name string) string {
	for _, kv := range d.env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// ctx carries the admin token.
func (d *daemon) ctx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+d.token)
}

// log is the current process's log.
func (d *daemon) log() string {
	if d.logPath == "" {
		return ""
	}
	raw, _ := os.ReadFile(d.logPath)
	return string(raw)
}

// allLogs is every log every start of this deployment wrote, in start order.
func (d *daemon) allLogs() []byte {
	var all []byte
	for i := 1; i <= d.starts; i++ {
		raw, err := os.ReadFile(filepath.Join(d.logDir, fmt.Sprintf("enrolld-%d.log", i)))
		if err != nil {
			d.t.Fatal(err)
		}
		all = append(all, raw...)
	}
	return all
}

// logRecords decodes the current process's JSON log lines whose msg is msg.
func (d *daemon) logRecords(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(d.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// openStore opens the deployment's database directly (migrations are already applied, so
// this only reads). Safe while enrolld runs: SQLite is in WAL mode.
func (d *daemon) openStore() *gormstore.Store {
	d.t.Helper()
	s, err := gormstore.Open(context.Background(), gormstore.Config{Driver: d.db.Driver, DSN: d.db.DSN, MaxOpenConns: 2})
	if err != nil {
		d.t.Fatalf("open the database directly: %v", err)
	}
	d.t.Cleanup(func() { _ = s.Close() })
	return s
}

// freeAddr finds a free loopback port. The listener is closed before enrolld binds it; the
// window in which another process could take it is tiny and fails loudly if it happens.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func random32(t testing.TB) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b[:])
}

// tail is the last n lines of a log, without the one-line records of successful calls
// (a poll loop writes thousands of them).
func tail(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if !(strings.Contains(l, `"msg":"rpc"`) && strings.Contains(l, `"code":"OK"`)) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// elapsed logs how long a step took, for the timings in the test output.
func elapsed(t testing.TB, what string, began time.Time) {
	t.Helper()
	t.Logf("timing: %s took %v", what, time.Since(began).Round(time.Millisecond))
}
