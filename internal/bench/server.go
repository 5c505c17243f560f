package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
)

// Secrets are the production-mode secrets of one benchmark server, generated fresh per run.
// The raw baseline hashes with the same lookup and identity keys.
type Secrets struct {
	LookupKeys  string // "kid:base64(32)"
	MasterKey   string // "kid:base64(32)"
	IdentityKey string // base64(32)
	JWTKeys     string
	AdminSecret string
}

// NewSecrets generates a set of secrets.
func NewSecrets() (Secrets, error) {
	rnd := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b) // never fails on Linux (crypto/rand panics instead of failing)
		return base64.StdEncoding.EncodeToString(b)
	}
	jwt, err := auth.GenerateSigningKey("bench1")
	if err != nil {
		return Secrets{}, err
	}
	var s [24]byte
	_, _ = rand.Read(s[:])
	return Secrets{
		LookupKeys:  "lk1:" + rnd(),
		MasterKey:   "mk1:" + rnd(),
		IdentityKey: rnd(),
		JWTKeys:     auth.EncodeSigningKey(jwt),
		AdminSecret: "bench-" + hex.EncodeToString(s[:]),
	}, nil
}

// ErrServerExited is wrapped by the error returned when enrolld stops during a run.
var ErrServerExited = errors.New("enrolld exited unexpectedly")

// Server is a running enrolld subprocess.
type Server struct {
	cmd      *exec.Cmd
	logPath  string
	logFile  *os.File
	GRPCAddr string
	HTTPAddr string // the REST gateway
	adminID  string
	secrets  Secrets

	exited  chan struct{} // closed when the process has ended
	waitErr error         // set before exited is closed
	mu      sync.Mutex
	stopped bool // Stop was called: an exit is expected

	plain *grpc.ClientConn // no credentials: AuthService.Token
	conn  *grpc.ClientConn // admin calls, with a self-refreshing token
}

// ServerConfig says how to start enrolld.
type ServerConfig struct {
	Binary   string
	Driver   string // sqlite or postgres
	DSN      string
	Secrets  Secrets
	LogPath  string        // server stdout+stderr go here
	Ready    time.Duration // how long to wait for the first successful Token call
	ExtraEnv []string
}

// BuildEnrolld compiles cmd/enrolld into dir and returns the binary's path. It must run inside
// the module (make and go run do).
func BuildEnrolld(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "enrolld")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/idprotect/enroll/cmd/enrolld")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("failed to build enrolld (run from the repository, or pass --enrolld PATH): %w\n%s", err, out.String())
	}
	return bin, nil
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// StartServer starts enrolld in production mode and waits until it issues an admin token.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	grpcAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(cfg.LogPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Binary, "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
		"--db-driver", cfg.Driver, "--db-dsn", cfg.DSN)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ENROLL_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		"ENROLL_MODE=production",
		"ENROLL_LOOKUP_KEYS="+cfg.Secrets.LookupKeys,
		"ENROLL_MASTER_KEY="+cfg.Secrets.MasterKey,
		"ENROLL_IDENTITY_KEY="+cfg.Secrets.IdentityKey,
		"ENROLL_JWT_KEYS="+cfg.Secrets.JWTKeys,
		"ENROLL_BOOTSTRAP_ADMIN_SECRET="+cfg.Secrets.AdminSecret,
		"ENROLL_LOG_LEVEL=info",
	)
	cmd.Env = append(cmd.Env, cfg.ExtraEnv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setPdeathsig(cmd) // the server must not outlive the benchmark
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("failed to start %s: %w", cfg.Binary, err)
	}
	s := &Server{cmd: cmd, logPath: cfg.LogPath, logFile: logFile, GRPCAddr: grpcAddr, HTTPAddr: httpAddr, adminID: "admin",
		secrets: cfg.Secrets, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.connect(ctx, cfg.Ready); err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Exited is closed when the process has ended.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// ExitError describes how the process ended, with the tail of its log. Call it after Exited.
func (s *Server) ExitError(during string) error {
	status := "exit status 0"
	if s.waitErr != nil {
		status = s.waitErr.Error()
	}
	return fmt.Errorf("%w %s (%s); last lines of its log %s:\n%s", ErrServerExited, during, status, s.logPath, s.LogTail(20))
}

// LogTail returns the last n lines of the server log.
func (s *Server) LogTail(n int) string { return tailFile(s.logPath, n) }

// tailFile returns the last n lines of a log file, indented.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (log unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "  (empty)"
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Watch returns a context cancelled when the server exits (with an error naming the phase as
// cause) or when parent ends. Use Cause(ctx, err) to turn an RPC failure into that error.
func (s *Server) Watch(parent context.Context, phase string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		select {
		case <-s.exited:
			s.mu.Lock()
			expected := s.stopped
			s.mu.Unlock()
			if !expected {
				cancel(s.ExitError(phase))
			}
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// Cause prefers the server's death over the error an RPC reported because of it.
func (s *Server) Cause(ctx context.Context, phase string, err error) error {
	if err == nil {
		return nil
	}
	if c := context.Cause(ctx); c != nil && errors.Is(c, ErrServerExited) {
		return c
	}
	select {
	case <-s.exited:
		return s.ExitError(phase)
	case <-time.After(200 * time.Millisecond):
		// An RPC failing because the server is dying may beat the exit by a moment.
		select {
		case <-s.exited:
			return s.ExitError(phase)
		default:
		}
	}
	return err
}

func (s *Server) connect(ctx context.Context, ready time.Duration) error {
	var err error
	s.plain, err = grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	creds := &tokenCreds{auth: enrollv1.NewAuthServiceClient(s.plain), id: s.adminID, secret: s.secrets.AdminSecret}
	s.conn, err = grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(creds))
	if err != nil {
		return err
	}
	if ready == 0 {
		ready = 2 * time.Minute
	}
	deadline := time.Now().Add(ready)
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := creds.GetRequestMetadata(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return s.ExitError("before it was ready")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("enrolld did not become ready within %s (last error: %v); log %s:\n%s", ready, err, s.logPath, s.LogTail(20))
		}
	}
}

// Token gets an access token for a client with its credentials.
func (s *Server) Token(ctx context.Context, id, secret string) (string, error) {
	resp, err := enrollv1.NewAuthServiceClient(s.plain).Token(ctx, &enrollv1.TokenRequest{GrantType: "client_credentials", ClientId: id, ClientSecret: secret})
	if err != nil {
		return "", fmt.Errorf("failed to get a token for client %s: %w", id, err)
	}
	return resp.GetAccessToken(), nil
}

// Admin is an AdminService client authenticated as the bootstrap admin.
func (s *Server) Admin() enrollv1.AdminServiceClient { return enrollv1.NewAdminServiceClient(s.conn) }

// Stop asks the server to shut down (SIGTERM) and waits, killing it after timeout.
func (s *Server) Stop(timeout time.Duration) error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.closeConns()
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(timeout):
			_ = s.cmd.Process.Kill()
			<-s.exited
			s.logFile.Close()
			return fmt.Errorf("enrolld did not stop within %s of SIGTERM; killed", timeout)
		}
	}
	s.logFile.Close()
	return nil
}

// Kill ends the server at once.
func (s *Server) Kill() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.closeConns()
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.logFile.Close()
}

func (s *Server) closeConns() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
	if s.plain != nil {
		_ = s.plain.Close()
	}
}

// tokenCreds attaches an admin bearer token to every call, fetching a new one shortly before
// the current one expires (tokens live at most an hour; a 50M-row run lasts longer).
type tokenCreds struct {
	auth       enrollv1.AuthServiceClient
	id, secret string

	mu  sync.Mutex
	tok string
	exp time.Time
}

func (c *tokenCreds) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == "" || time.Until(c.exp) < 2*time.Minute {
		resp, err := c.auth.Token(ctx, &enrollv1.TokenRequest{GrantType: "client_credentials", ClientId: c.id, ClientSecret: c.secret})
		if err != nil {
			return nil, fmt.Errorf("failed to get an admin token: %w", err)
		}
		c.tok, c.exp = resp.GetAccessToken(), time.Now().Add(time.Duration(resp.GetExpiresIn())*time.Second)
	}
	return map[string]string{"authorization": "Bearer " + c.tok}, nil
}

func (c *tokenCreds) RequireTransportSecurity() bool { return false }
