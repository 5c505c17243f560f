package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/eligibility"
	"github.com/idprotect/enroll/internal/store/gormstore"
)

// enrollbench serve measures the serving path: redemption + partner activation through the
// real enrolld (gRPC, and REST through its gateway) against a bare grpc-go server doing the
// same single database transaction per call (and a bare grpc-gateway in front of it), with
// the same clients, in one run.

const serveUsage = `usage: enrollbench serve [flags]

Drives redemptions + partner activations with N concurrent clients for a bounded time against
the real enrolld (subprocess, production mode) over gRPC and over REST, and against a bare
grpc-go server (and a bare grpc-gateway in front of it) doing the same one transaction per
call on the same engine. Prints a markdown table with ops/s and p50/p99 latencies, and the
ratios ours/bare.

  enrollbench serve --clients 16 --duration 20s
  enrollbench serve --engine postgres --postgres-dsn postgres://user:pass@127.0.0.1/db?sslmode=disable

flags:
`

type serveOptions struct {
	issueOptions // engine, DSN, work dir, enrolld binary, seed, server env, progress
	subjects     int64
	clients      int
	duration     time.Duration
	warmup       time.Duration
	rounds       int
	bareProfile  string
	// allowErrors makes a run with errors succeed (the report still says so loudly).
	allowErrors bool
}

func parseServeFlags(args []string, stderr io.Writer) (*serveOptions, error) {
	fs := flag.NewFlagSet("enrollbench serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, serveUsage); fs.PrintDefaults() }
	o := &serveOptions{}
	subjects := fs.String("subjects", "150k", "people to import and issue codes for; each operation consumes one code, so this bounds the run (ours and bare get the same codes)")
	fs.IntVar(&o.clients, "clients", 16, "concurrent clients, each with its own connection")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured time per phase")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each phase")
	fs.IntVar(&o.rounds, "rounds", 1, "repeat the six phases (ours, bare-store, bare-min; gRPC then REST) this many times; ratios are reported per round and as the median")
	o.sharedFlags(fs)
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the load generator) to this file")
	fs.StringVar(&o.bareProfile, "bare-cpuprofile", "", "write a CPU profile of the bare server to this file")
	fs.BoolVar(&o.allowErrors, "allow-errors", false, "exit 0 even if calls failed during the load")
	fs.DurationVar(&o.progress, "progress-every", 5*time.Second, "progress line interval on stderr during set-up")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	var err error
	if o.subjects, err = ParseCount(*subjects); err != nil {
		return nil, fmt.Errorf("--subjects: %w", err)
	}
	if err := o.checkEngine(); err != nil {
		return nil, err
	}
	if o.clients < 1 || o.clients > 1000 {
		return nil, errors.New("--clients must be between 1 and 1000")
	}
	if o.duration <= 0 || o.warmup < 0 || o.rounds < 1 {
		return nil, errors.New("--duration must be positive, --warmup not negative, --rounds at least 1")
	}
	o.sampleEvery = time.Second
	return o, nil
}

// serveLimits lift enrolld's abuse limits out of the way: the load is one partner client
// calling far faster than a real one, and the run measures serving, not throttling. The
// limits are still evaluated on every call (their cost is part of the measurement).
var serveLimits = []string{
	"ENROLL_LIMIT_PARTNER_CALLS=1000000000/1m",
	"ENROLL_LIMIT_CODE_FAILURES_GLOBAL=1000000000/1m",
	"ENROLL_LIMIT_CODE_FAILURES_PER_ADDRESS=1000000000/1m",
}

// serveTarget is one server under load.
type serveTarget struct {
	name      string // "ours", "bare-store" or "bare-min"
	grpcAddr  string
	httpAddr  string
	pid       int
	pool      *codePool
	token     string
	transport string
}

func runServe(ctx context.Context, o *serveOptions, stdout, stderr io.Writer) (err error) {
	e, finish, err := openEnv(ctx, &o.issueOptions, stdout, stderr)
	if err != nil {
		return err
	}
	defer func() { finish(err) }()
	m := describeMachine(ctx, &o.issueOptions, e.work)
	load0 := loadAvg()
	in, err := e.generate(o.subjects)
	if err != nil {
		return err
	}

	// Ours: the real enrolld, set up through its API, codes exported through its API.
	t, err := e.newTarget(ctx, "ours")
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "ours (%s): starting enrolld, importing and issuing %s subjects...\n", o.engine, groupThousands(o.subjects))
	srv, err := StartServer(ctx, ServerConfig{Binary: e.binary, Driver: t.driver, DSN: t.dsn, Secrets: e.secrets,
		LogPath: filepath.Join(e.work, "ours-enrolld.log"), ExtraEnv: append(append([]string{}, serveLimits...), o.serverEnv...)})
	if err != nil {
		return err
	}
	defer srv.Kill() // no-op after Stop
	ours, err := setupOurs(ctx, srv, in, e.prog, o.sampleEvery)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "ours: %s codes exported\n", groupThousands(int64(len(ours.pool.codes))))

	// Bare: the same number of codes, written straight into the same schema.
	bt, err := e.newTarget(ctx, "bare")
	if err != nil {
		return err
	}
	bareCodes, err := preloadBare(ctx, bt, e.secrets, len(ours.pool.codes))
	if err != nil {
		return fmt.Errorf("bare set-up: %w", err)
	}
	bp, err := startBare(ctx, bt.driver, bt.dsn, bareMinimal, e.secrets, filepath.Join(e.work, "bare-server.log"), o.bareProfile)
	if err != nil {
		return err
	}
	defer bp.Kill()
	bare := &serveTarget{name: "bare-min", grpcAddr: bp.GRPCAddr, httpAddr: bp.HTTPAddr, pid: bp.PID(),
		pool: &codePool{codes: bareCodes}, token: ours.token}

	// Bare-store: enrolld's own transactions on enrolld's own database, with half of the
	// codes enrolld issued (ours keeps the other half).
	half := len(ours.pool.codes) / 2
	sp, err := startBare(ctx, t.driver, t.dsn, bareSameTx, e.secrets, filepath.Join(e.work, "bare-store-server.log"), "")
	if err != nil {
		return err
	}
	defer sp.Kill()
	sameTx := &serveTarget{name: "bare-store", grpcAddr: sp.GRPCAddr, httpAddr: sp.HTTPAddr, pid: sp.PID(),
		pool: &codePool{codes: ours.pool.codes[half:]}, token: ours.token}
	ours.pool.codes = ours.pool.codes[:half]

	rep := &serveReport{o: o, m: m, load0: load0}
	for round := 1; round <= o.rounds; round++ {
		var phases []*phaseResult
		for _, tr := range []string{"gRPC", "REST"} {
			for _, tg := range []*serveTarget{ours, sameTx, bare} {
				name := fmt.Sprintf("%s %s", tg.name, tr)
				fmt.Fprintf(stderr, "round %d/%d: %s, %d clients, %s (+%s warm-up); %s codes left...\n",
					round, o.rounds, name, o.clients, o.duration, o.warmup, groupThousands(int64(tg.pool.left())))
				res, err := runPhase(ctx, phaseSpec{name: name, clients: o.clients, warmup: o.warmup, duration: o.duration,
					newCaller: tg.callerFactory(tr), pool: tg.pool, serverPID: tg.pid})
				if err != nil {
					return err
				}
				select {
				case <-srv.Exited():
					return srv.ExitError("during the load")
				case <-bp.exited:
					return fmt.Errorf("the bare server exited during the load (%v); log:\n%s", bp.waitErr, tailFile(bp.logPath, 20))
				case <-sp.exited:
					return fmt.Errorf("the bare-store server exited during the load (%v); log:\n%s", sp.waitErr, tailFile(sp.logPath, 20))
				default:
				}
				fmt.Fprintf(stderr, "  %s ops/s, %d errors\n", fmtRate(res.OpsPerSec()), res.Errors)
				phases = append(phases, res)
			}
		}
		rep.rounds = append(rep.rounds, phases)
		rep.loads = append(rep.loads, loadAvg())
	}
	if err := srv.Stop(30 * time.Second); err != nil {
		fmt.Fprintf(stderr, "warning: %v\n", err)
	}
	for _, p := range []*bareProc{bp, sp} {
		if err := p.Stop(); err != nil {
			fmt.Fprintf(stderr, "warning: %v\n", err)
		}
	}
	rep.write(stdout)
	if n := rep.errors(); n > 0 && !o.allowErrors {
		return fmt.Errorf("%d calls failed during the load (see the report); the figures are not clean", n)
	}
	if rep.outOfCodes() {
		return errors.New("a phase ran out of codes before its time was up; raise --subjects or lower --duration")
	}
	return nil
}

func (tg *serveTarget) callerFactory(transport string) func() (caller, error) {
	if transport == "REST" {
		return func() (caller, error) { return newRESTCaller(tg.httpAddr, tg.token), nil }
	}
	return func() (caller, error) { return newGRPCCaller(tg.grpcAddr, tg.token) }
}

// setupOurs creates the incident, imports and issues in through the API, exports every
// plaintext code, and gets a token for a new partner client.
func setupOurs(ctx context.Context, srv *Server, in *input, prog *progress, sampleEvery time.Duration) (*serveTarget, error) {
	sampler := StartSampler(srv.PID(), sampleEvery, nil, "")
	sys, err := (&systemRun{srv: srv, sampler: sampler, file: in.path, rows: in.rows, progress: prog}).run(ctx)
	sampler.Stop()
	if err != nil {
		return nil, err
	}
	admin := srv.Admin()
	wctx, cancel := srv.Watch(ctx, "while exporting codes")
	defer cancel()
	var plain []string
	for _, b := range sys.BatchNames {
		stream, err := admin.ExportBatchCodes(wctx, &enrollv1.ExportBatchCodesRequest{Name: b})
		if err != nil {
			return nil, srv.Cause(wctx, "while exporting codes", err)
		}
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, srv.Cause(wctx, "while exporting codes", fmt.Errorf("ExportBatchCodes %s: %w", b, err))
			}
			for _, c := range resp.GetCodes() {
				plain = append(plain, c.GetCode())
			}
		}
	}
	if int64(len(plain)) != sys.Codes {
		return nil, fmt.Errorf("exported %d codes, %d were issued", len(plain), sys.Codes)
	}
	cl, err := admin.CreateClient(wctx, &enrollv1.CreateClientRequest{Client: &enrollv1.Client{
		Role: enrollv1.Role_ROLE_PARTNER, Partner: "partners/bench-partner", DisplayName: "load generator",
	}})
	if err != nil {
		return nil, srv.Cause(wctx, "while creating the partner client", fmt.Errorf("CreateClient: %w", err))
	}
	id := cl.GetClient().GetName()[strings.LastIndexByte(cl.GetClient().GetName(), '/')+1:]
	tok, err := srv.Token(wctx, id, cl.GetClientSecret())
	if err != nil {
		return nil, err
	}
	return &serveTarget{name: "ours", grpcAddr: srv.GRPCAddr, httpAddr: srv.HTTPAddr, pid: srv.PID(),
		pool: &codePool{codes: plain}, token: tok}, nil
}

// preloadBare creates the schema (gormstore.Open: the same tables and indexes as enrolld's)
// and writes n ISSUED codes for the bare server, hashed under the same lookup key as
// enrolld's; it returns their plaintext.
func preloadBare(ctx context.Context, t dbTarget, sec Secrets, n int) ([]string, error) {
	st, err := gormstore.Open(ctx, gormstore.Config{Driver: t.driver, DSN: t.dsn})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := createRawIncident(ctx, st); err != nil {
		return nil, err
	}
	keyring, err := enrollcodes.ParseKeyring(sec.LookupKeys)
	if err != nil {
		return nil, err
	}
	secret, err := enrollcodes.NewBatchSecret()
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	meta := rawCodeMeta{incident: IncidentID, keyID: keyring.Current(), issueTime: now, redeemBy: now.AddDate(0, 0, 90)}
	var w rawWriter
	if t.driver == gormstore.DriverSQLite {
		db, err := st.DB().DB()
		if err != nil {
			return nil, err
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		w = newSQLiteWriter(conn, 250, meta)
	} else {
		conn, err := pgx.Connect(ctx, t.dsn)
		if err != nil {
			return nil, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		w = &pgWriter{conn: conn, meta: meta}
	}
	plain := make([]string, 0, n)
	chunk := &rawChunk{}
	for id := int64(1); id <= int64(n); id++ {
		c := enrollcodes.Derive(secret, id, 0)
		sum, err := keyring.Sum(meta.keyID, c)
		if err != nil {
			return nil, err
		}
		plain = append(plain, c.String())
		chunk.codes = append(chunk.codes, rawCode{hmac: sum, cohort: eligibility.CohortCredit, subjectID: id})
		if len(chunk.codes) == 10000 || id == int64(n) {
			if err := w.write(ctx, chunk); err != nil {
				return nil, err
			}
			chunk.reset()
		}
	}
	return plain, nil
}

// loadAvg is /proc/loadavg's 1, 5 and 15 minute figures, or "unknown".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

type serveReport struct {
	o      *serveOptions
	m      machine
	load0  string
	loads  []string         // after each round
	rounds [][]*phaseResult // per round: ours, bare-store, bare-min over gRPC, then over REST
}

func (r *serveReport) errors() int64 {
	var n int64
	for _, ph := range r.rounds {
		for _, p := range ph {
			n += p.Errors
		}
	}
	return n
}

func (r *serveReport) outOfCodes() bool {
	for _, ph := range r.rounds {
		for _, p := range ph {
			if p.OutOfCodes {
				return true
			}
		}
	}
	return false
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// Phases of a round, per transport (gRPC first, then REST): ours, bare-store, bare-min.
const (
	phasesPerTransport = 3
	bareStorePhase     = 1
	bareMinPhase       = 2
)

// roundRatio is ours' ops/s over the bare server's at phase bare of transport tr (0 gRPC,
// 1 REST) of a round.
func roundRatio(ph []*phaseResult, tr, bare int) float64 {
	i := tr * phasesPerTransport
	if ph[i+bare].Ops == 0 {
		return math.NaN()
	}
	return ph[i].OpsPerSec() / ph[i+bare].OpsPerSec()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func verdict(ratio, target float64) string {
	if math.IsNaN(ratio) {
		return "unknown (the bare server completed nothing)"
	}
	if ratio >= target {
		return "meets"
	}
	return "MISSES"
}

func (r *serveReport) write(w io.Writer) {
	o, m := r.o, r.m
	fmt.Fprintf(w, "\n## enrollbench serve: %s, %d clients, %s per phase, %d round(s) (%s)\n\n", o.engine, o.clients, o.duration, o.rounds,
		m.date.UTC().Format("2006-01-02 15:04 UTC"))
	cpu := m.cpuModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s RAM, %s, %s, %s. Load average (1/5/15 min) before set-up: %s; after each round: %s.\n\n",
		m.cpus, cpu, m.memTotal, m.kernel, m.goVer, m.engine, r.load0, strings.Join(r.loads, "; "))
	fmt.Fprintln(w, "| round | server | transport | ops/s | redeem p50 ms | redeem p99 ms | activate p50 ms | activate p99 ms | server CPU ms/op | errors |")
	fmt.Fprintln(w, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
	var grpcRatios, restRatios, grpcMin, restMin []float64
	for i, ph := range r.rounds {
		for _, p := range ph {
			server, transport, _ := strings.Cut(p.Name, " ")
			errs := groupThousands(p.Errors)
			if p.Errors > 0 {
				errs = "**" + errs + "**"
			}
			if p.OutOfCodes {
				errs += " (ran out of codes)"
			}
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", i+1, server, transport, fmtRate(p.OpsPerSec()),
				ms(percentile(p.Redeem, 0.50)), ms(percentile(p.Redeem, 0.99)), ms(percentile(p.Activate, 0.50)), ms(percentile(p.Activate, 0.99)),
				ms(p.CPUPerOp()), errs)
		}
		grpcRatios = append(grpcRatios, roundRatio(ph, 0, bareStorePhase))
		restRatios = append(restRatios, roundRatio(ph, 1, bareStorePhase))
		grpcMin = append(grpcMin, roundRatio(ph, 0, bareMinPhase))
		restMin = append(restMin, roundRatio(ph, 1, bareMinPhase))
	}
	fmt.Fprintln(w)
	per := func(xs []float64) string {
		if len(xs) == 1 {
			return ""
		}
		var s []string
		for _, x := range xs {
			s = append(s, fmt.Sprintf("%.2f", x))
		}
		return " (rounds: " + strings.Join(s, ", ") + ")"
	}
	g, rr := median(grpcRatios), median(restRatios)
	fmt.Fprintf(w, "- **ours/bare-store gRPC: %.2f**%s, target ≥ 0.60: %s.\n", g, per(grpcRatios), verdict(g, 0.60))
	fmt.Fprintf(w, "- **ours/bare-store REST: %.2f**%s, target ≥ 0.70: %s.\n", rr, per(restRatios), verdict(rr, 0.70))
	fmt.Fprintf(w, "- ours/bare-min (reference: what counters, events and the audit chain cost): gRPC %.2f%s, REST %.2f%s.\n",
		median(grpcMin), per(grpcMin), median(restMin), per(restMin))
	if len(r.rounds) > 1 {
		fmt.Fprintln(w, "- Ratios are the median over the rounds.")
	}
	fmt.Fprintf(w, "- One operation = RedeemCode (no token) then ActivateEnrollment (partner bearer token) of the enrollment it made; each client has its own connection (gRPC: one HTTP/2 connection; REST: one keep-alive HTTP/1.1 connection, JSON). Warm-up %s per phase, not measured. Subjects: %s imported into enrolld; the codes it issued are split half for ours, half for bare-store, and bare-min gets as many of its own.\n",
		o.warmup, groupThousands(o.subjects))
	fmt.Fprintln(w, "- bare-store = grpc-go with no interceptors whose two RPCs run enrolld's own transactions (the same store methods, audit entry included) on enrolld's database; it is the like-for-like baseline of the targets. Ours and bare-store each get half of the codes enrolld issued.")
	fmt.Fprintln(w, "- bare-min = grpc-go with no interceptors, the same two RPCs as one database/sql transaction each (UPDATE codes ... RETURNING + INSERT enrollments; UPDATE enrollments ... RETURNING) on the same schema, pool and pragmas, code parsing and lookup HMAC included; bare REST = a plain grpc-gateway mux with the same JSON options in front of it over loopback.")
	var gen []string
	for i, ph := range r.rounds {
		for _, p := range ph {
			gen = append(gen, fmt.Sprintf("%d %s %s", i+1, p.Name, cores(p.ClientCPU, p.Elapsed)))
		}
	}
	fmt.Fprintf(w, "- The load generator (enrollbench, same machine) used, in cores: %s.\n", strings.Join(gen, ", "))
	fmt.Fprintln(w, "- Server CPU is the server process's user+system time per completed operation (REST includes the gateway, which runs in the server process in both cases); PostgreSQL's own processes are not included.")
	if n := r.errors(); n > 0 {
		fmt.Fprintf(w, "- **WARNING: %d calls failed during the load; the figures are not clean.**\n", n)
		for _, ph := range r.rounds {
			for _, p := range ph {
				for _, k := range errorKinds(p.ErrKinds) {
					fmt.Fprintf(w, "  - %s: %s\n", p.Name, k)
				}
			}
		}
	}
	if r.outOfCodes() {
		fmt.Fprintln(w, "- **WARNING: a phase ran out of codes before its time was up; it was measured over a shorter window than asked (and a phase after it on the same server had no codes at all); raise --subjects.**")
	}
	fmt.Fprintf(w, "- enrollbench's own peak RSS: %s MiB.\n", fmtMiB(selfMaxRSS()))
	fmt.Fprintf(w, "- Command: %s\n", serveCommandLine(o))
}

func serveCommandLine(o *serveOptions) string {
	parts := []string{"go run ./cmd/enrollbench serve", "--engine " + o.engine}
	if o.engine == "postgres" {
		parts = append(parts, "--postgres-dsn '"+maskPassword(o.pgDSN)+"'")
	}
	parts = append(parts, fmt.Sprintf("--subjects %d --clients %d --duration %s --warmup %s --rounds %d", o.subjects, o.clients, o.duration, o.warmup, o.rounds))
	for _, kv := range o.serverEnv {
		parts = append(parts, "--server-env "+kv)
	}
	return "`" + strings.Join(parts, " ") + "`"
}
