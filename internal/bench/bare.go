package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store/gormstore"
)

// The bare server is the baseline of enrollbench serve: a grpc-go server with no
// interceptors, no auth, no counters, events, audit or idempotency, answering RedeemCode and
// ActivateEnrollment with the one database transaction each call needs, in plain
// database/sql, on the same tables, indexes and pool (gormstore.Open creates the schema and
// configures the pool and SQLite pragmas exactly as for enrolld). It parses the code and
// computes its lookup HMAC as enrolld does. A bare grpc-gateway in the same process fronts
// it over loopback, as enrolld's gateway fronts enrolld.
//
// It runs as a subprocess (this binary, with bareEnv set), so that it has a Go runtime and
// a process of its own, like enrolld, and does not share the load generator's.

// The bare server's two kinds of transaction: the minimum a redemption and an activation
// need (claim the code and create the enrollment; activate it), or exactly enrolld's own
// (the store's, with counters, events and the audit entry).
const (
	bareMinimal = "minimal"
	bareSameTx  = "store"
)

// bareEnv, when set in the environment, makes Main (and the test binary) run the bare server
// with the arguments given.
const bareEnv = "ENROLLBENCH_BARE_SERVER"

// bareIncident holds what the bare server needs of the incident, in memory.
var bareIncident = func() enrollment.Incident {
	in := enrollment.Incident{ID: IncidentID, PartnerID: "bench-partner"}
	in.ApplyDefaults()
	return in
}()

const barePartnerURI = "https://partner.example/enroll"

type bareDB struct {
	db      *sql.DB
	keyring *enrollcodes.Keyring
	redeem  string // claim the code, returning what the enrollment needs
	insert  string // create the enrollment
	// activate binds the member id, returning what the response needs.
	activate string
}

func newBareDB(db *sql.DB, driver string, keyring *enrollcodes.Keyring) *bareDB {
	q := func(s string) string {
		if driver != gormstore.DriverPostgres {
			return s
		}
		var b strings.Builder
		n := 0
		for _, r := range s {
			if r == '?' {
				n++
				b.WriteString("$" + strconv.Itoa(n))
				continue
			}
			b.WriteRune(r)
		}
		return b.String()
	}
	return &bareDB{
		db: db, keyring: keyring,
		redeem: q(`UPDATE codes SET state = 'REDEEMED', redeem_time = ? WHERE code_hmac = ? AND state = 'ISSUED'
			RETURNING id, incident_id, cohort_id, subject_id`),
		insert: q(`INSERT INTO enrollments (id, incident_id, cohort_id, subject_id, code_id, partner_id, live_subject_id,
			state, redeem_time, activation_deadline, cancel_reason, expiring_notified) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`),
		activate: q(`UPDATE enrollments SET state = 'ACTIVE', member_id = ?, activate_time = ?, coverage_end = ?
			WHERE id = ? AND partner_id = ? AND state = 'PENDING'
			RETURNING incident_id, cohort_id, redeem_time, activation_deadline`),
	}
}

var bareIDs = base32.StdEncoding.WithPadding(base32.NoPadding)

// bareID makes an enrollment id the way enrolld does (16 random bytes, lower-case base32).
func bareID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(bareIDs.EncodeToString(b[:]))
}

type bareRedemption struct {
	enrollv1.UnimplementedRedemptionServiceServer
	d *bareDB
}

func (s *bareRedemption) RedeemCode(ctx context.Context, req *enrollv1.RedeemCodeRequest) (*enrollv1.RedeemCodeResponse, error) {
	code, err := enrollcodes.Parse(req.GetCode())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	sum, err := s.d.keyring.Sum(s.d.keyring.Current(), code)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	now := time.Now().UTC()
	id := bareID()
	tx, err := s.d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer func() { _ = tx.Rollback() }()
	var (
		codeID, subjectID    int64
		incidentID, cohortID string
	)
	if err := tx.QueryRowContext(ctx, s.d.redeem, now, sum).Scan(&codeID, &incidentID, &cohortID, &subjectID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, status.Error(codes.AlreadyExists, "no such unredeemed code")
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	deadline := now.AddDate(0, 0, bareIncident.ActivationWindowDays)
	if _, err := tx.ExecContext(ctx, s.d.insert, id, incidentID, cohortID, subjectID, codeID, bareIncident.PartnerID, subjectID,
		string(enrollment.EnrollmentPending), now, deadline, "", false); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := tx.Commit(); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &enrollv1.RedeemCodeResponse{
		Enrollment: &enrollv1.Enrollment{
			Name: "enrollments/" + id, Incident: "incidents/" + incidentID, Cohort: "incidents/" + incidentID + "/cohorts/" + cohortID,
			Partner: "partners/" + bareIncident.PartnerID, State: enrollv1.EnrollmentState_ENROLLMENT_STATE_PENDING,
			RedeemTime: timestamppb.New(now), ActivationDeadlineTime: timestamppb.New(deadline), ReadTime: timestamppb.New(now),
		},
		NextStepUri: barePartnerURI + "?enrollment=enrollments%2F" + id,
	}, nil
}

// bareActivationID is the enrollment id of an activation request, checked as both bare
// servers need it.
func bareActivationID(req *enrollv1.ActivateEnrollmentRequest) (string, error) {
	id, ok := strings.CutPrefix(req.GetName(), "enrollments/")
	if !ok || id == "" || req.GetMemberId() == "" {
		return "", status.Error(codes.InvalidArgument, "want name enrollments/{id} and a member_id")
	}
	return id, nil
}

type barePartner struct {
	enrollv1.UnimplementedPartnerServiceServer
	d *bareDB
}

func (s *barePartner) ActivateEnrollment(ctx context.Context, req *enrollv1.ActivateEnrollmentRequest) (*enrollv1.ActivateEnrollmentResponse, error) {
	id, err := bareActivationID(req)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	end := enrollment.AddMonthsClamped(now, bareIncident.CoverageMonths)
	tx, err := s.d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer func() { _ = tx.Rollback() }()
	var (
		incidentID, cohortID string
		redeemed, deadline   time.Time
	)
	if err := tx.QueryRowContext(ctx, s.d.activate, req.GetMemberId(), now, end, id, bareIncident.PartnerID).
		Scan(&incidentID, &cohortID, &redeemed, &deadline); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, status.Error(codes.FailedPrecondition, "no such pending enrollment")
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := tx.Commit(); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &enrollv1.ActivateEnrollmentResponse{Enrollment: &enrollv1.Enrollment{
		Name: req.GetName(), Incident: "incidents/" + incidentID, Cohort: "incidents/" + incidentID + "/cohorts/" + cohortID,
		Partner: "partners/" + bareIncident.PartnerID, State: enrollv1.EnrollmentState_ENROLLMENT_STATE_ACTIVE,
		MemberId: req.GetMemberId(), RedeemTime: timestamppb.New(redeemed), ActivationDeadlineTime: timestamppb.New(deadline),
		ActivateTime: timestamppb.New(now), CoverageEndTime: timestamppb.New(end), ReadTime: timestamppb.New(now),
	}}, nil
}

// bareMain runs the bare server until ctx ends.
func bareMain(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("enrollbench bare-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	driver := fs.String("db-driver", "sqlite", "")
	dsn := fs.String("db-dsn", "", "")
	grpcAddr := fs.String("grpc-addr", "", "")
	httpAddr := fs.String("http-addr", "", "")
	cpuProfile := fs.String("cpuprofile", "", "")
	txMode := fs.String("tx", bareMinimal, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	keyring, err := enrollcodes.ParseKeyring(os.Getenv("ENROLL_LOOKUP_KEYS"))
	if err != nil {
		return fmt.Errorf("ENROLL_LOOKUP_KEYS: %w", err)
	}
	st, err := gormstore.Open(ctx, gormstore.Config{Driver: *driver, DSN: *dsn})
	if err != nil {
		return err
	}
	defer st.Close()
	db, err := st.DB().DB()
	if err != nil {
		return err
	}
	d := newBareDB(db, *driver, keyring)

	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	switch *txMode {
	case bareMinimal:
		enrollv1.RegisterRedemptionServiceServer(gs, &bareRedemption{d: d})
		enrollv1.RegisterPartnerServiceServer(gs, &barePartner{d: d})
	case bareSameTx:
		b := &bareStore{st: st, keyring: keyring, partnerID: bareIncident.PartnerID}
		enrollv1.RegisterRedemptionServiceServer(gs, &bareStoreRedemption{b: b})
		enrollv1.RegisterPartnerServiceServer(gs, &bareStorePartner{b: b})
	default:
		return fmt.Errorf("--tx %q: want %s or %s", *txMode, bareMinimal, bareSameTx)
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)

	// The same JSON options as enrolld's gateway, so both answer the same bytes.
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
	}))
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if err := enrollv1.RegisterRedemptionServiceHandlerFromEndpoint(ctx, mux, gl.Addr().String(), dial); err != nil {
		return err
	}
	if err := enrollv1.RegisterPartnerServiceHandlerFromEndpoint(ctx, mux, gl.Addr().String(), dial); err != nil {
		return err
	}
	hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(gl) }()
	go func() {
		if err := hsrv.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	fmt.Fprintln(stderr, "bare server: serving grpc", gl.Addr(), "http", hl.Addr())
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hsrv.Shutdown(sctx)
	gs.Stop()
	return serveErr
}

// bareProc is a running bare server subprocess.
type bareProc struct {
	cmd      *exec.Cmd
	logPath  string
	logFile  *os.File
	GRPCAddr string
	HTTPAddr string
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// startBare starts this executable as the bare server on driver/dsn and waits until its
// health service answers SERVING.
func startBare(ctx context.Context, driver, dsn, txMode string, sec Secrets, logPath, cpuProfile string) (*bareProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ga, err := freePort()
	if err != nil {
		return nil, err
	}
	ha, err := freePort()
	if err != nil {
		return nil, err
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"--db-driver", driver, "--db-dsn", dsn, "--grpc-addr", ga, "--http-addr", ha, "--tx", txMode}
	if cpuProfile != "" {
		args = append(args, "--cpuprofile", cpuProfile)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), bareEnv+"=1", "ENROLL_LOOKUP_KEYS="+sec.LookupKeys)
	cmd.Stdout, cmd.Stderr = lf, lf
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("failed to start the bare server: %w", err)
	}
	p := &bareProc{cmd: cmd, logPath: logPath, logFile: lf, GRPCAddr: ga, HTTPAddr: ha, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	conn, err := grpc.NewClient(ga, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.Kill()
		return nil, err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("the bare server exited before it was ready (%v); log %s:\n%s", p.waitErr, logPath, tailFile(logPath, 20))
		case <-ctx.Done():
			p.Kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("the bare server was not ready within a minute (last error: %v); log %s", err, logPath)
		}
	}
}

// PID is the bare server's process id.
func (p *bareProc) PID() int { return p.cmd.Process.Pid }

// Stop ends the bare server with SIGTERM (so a CPU profile is written) and waits.
func (p *bareProc) Stop() error {
	var err error
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			err = errors.New("the bare server did not stop within 15s of SIGTERM; killed")
		}
		p.logFile.Close()
	})
	return err
}

// Kill ends the bare server at once.
func (p *bareProc) Kill() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.logFile.Close()
	})
}
