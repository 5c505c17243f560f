package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/eligibility"
)

// fakeEnv makes the test binary act as a fake enrolld (see fakeEnrolld), so the tests can
// watch the benchmark meet a server that dies.
const fakeEnv = "ENROLLBENCH_FAKE_ENROLLD"

func TestMain(m *testing.M) {
	if os.Getenv(bareEnv) != "" {
		// The bare server of the serve tests: this binary, started by startBare.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err := bareMain(ctx, os.Args[1:], os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bare server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if mode := os.Getenv(fakeEnv); mode != "" {
		fakeEnrolld(mode)
		return
	}
	os.Exit(m.Run())
}

func pidSelf() int { return os.Getpid() }

// fakeEnrolld serves tokens and the incident set-up calls, then, in mode "crash-on-import",
// exits with status 3 as soon as an import starts; in mode "exit-at-once" it exits before
// listening.
func fakeEnrolld(mode string) {
	fs := flag.NewFlagSet("fake", flag.ContinueOnError)
	addr := fs.String("grpc-addr", "", "")
	fs.String("http-addr", "", "")
	fs.String("db-driver", "", "")
	fs.String("db-dsn", "", "")
	_ = fs.Parse(os.Args[1:])
	if mode == "exit-at-once" {
		fmt.Fprintln(os.Stderr, "fake enrolld: cannot open the database")
		os.Exit(2)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		os.Exit(4)
	}
	gs := grpc.NewServer()
	enrollv1.RegisterAuthServiceServer(gs, fakeAuth{})
	enrollv1.RegisterAdminServiceServer(gs, fakeAdmin{})
	fmt.Fprintln(os.Stderr, "fake enrolld: serving")
	_ = gs.Serve(lis)
}

type fakeAuth struct {
	enrollv1.UnimplementedAuthServiceServer
}

func (fakeAuth) Token(context.Context, *enrollv1.TokenRequest) (*enrollv1.TokenResponse, error) {
	return &enrollv1.TokenResponse{AccessToken: "t", TokenType: "Bearer", ExpiresIn: 900}, nil
}

type fakeAdmin struct {
	enrollv1.UnimplementedAdminServiceServer
}

func (fakeAdmin) CreatePartner(context.Context, *enrollv1.CreatePartnerRequest) (*enrollv1.CreatePartnerResponse, error) {
	return &enrollv1.CreatePartnerResponse{}, nil
}

func (fakeAdmin) CreateIncident(context.Context, *enrollv1.CreateIncidentRequest) (*enrollv1.CreateIncidentResponse, error) {
	return &enrollv1.CreateIncidentResponse{}, nil
}

func (fakeAdmin) CreateCohort(context.Context, *enrollv1.CreateCohortRequest) (*enrollv1.CreateCohortResponse, error) {
	return &enrollv1.CreateCohortResponse{}, nil
}

func (fakeAdmin) ImportSubjects(stream enrollv1.AdminService_ImportSubjectsServer) error {
	_, _ = stream.Recv()
	fmt.Fprintln(os.Stderr, "fake enrolld: panic: out of memory (on purpose)")
	os.Exit(3)
	return nil
}

func startFake(t *testing.T, mode string) (*Server, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeEnv, mode)
	sec, err := NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	return StartServer(t.Context(), ServerConfig{Binary: exe, Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "x.db"),
		Secrets: sec, LogPath: filepath.Join(t.TempDir(), "enrolld.log"), Ready: 20 * time.Second})
}

func TestServerExitsBeforeReady(t *testing.T) {
	_, err := startFake(t, "exit-at-once")
	if !errors.Is(err, ErrServerExited) {
		t.Fatalf("err = %v, want ErrServerExited", err)
	}
	for _, want := range []string{"before it was ready", "exit status 2", "cannot open the database"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestServerDiesDuringImport(t *testing.T) {
	srv, err := startFake(t, "crash-on-import")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	file := filepath.Join(t.TempDir(), "in.csv")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := eligibility.Generate(f, eligibility.GenerateOptions{Rows: 5000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sampler := StartSampler(srv.PID(), 10*time.Millisecond, nil, "")
	defer sampler.Stop()
	_, err = (&systemRun{srv: srv, sampler: sampler, file: file, rows: 5000}).run(t.Context())
	if !errors.Is(err, ErrServerExited) {
		t.Fatalf("err = %v, want ErrServerExited", err)
	}
	for _, want := range []string{"during the import", "exit status 3", "out of memory (on purpose)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
