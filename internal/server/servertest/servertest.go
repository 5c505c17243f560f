// Package servertest starts a real enrolld (gRPC and REST gateway on loopback ports, a real
// database, a fake clock) inside a test, for tests of clients of the API such as enrollctl.
package servertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/clock"
	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/server"
	"github.com/idprotect/enroll/internal/store/gormstore"
)

// Server is a running test server.
type Server struct {
	App   *server.Assembled
	Clock *clock.Fake
	// Conn is a gRPC client connection to the server.
	Conn *grpc.ClientConn
	// HTTPBase is the gateway's base URL, e.g. http://127.0.0.1:41234 (https:// with TLS).
	HTTPBase string
	// AdminID and AdminSecret are the bootstrap admin's credentials.
	AdminID, AdminSecret string
	logs                 *syncBuffer
}

// Logs returns everything the server logged so far.
func (s *Server) Logs() string { return s.logs.String() }

// Start runs a server on db with fresh production-mode secrets until t ends. opts adjust the
// configuration (limits, CORS origins, TLS files) before it is validated.
func Start(t testing.TB, db gormstore.Config, start time.Time, opts ...func(*config.Config)) *Server {
	t.Helper()
	jwtKey, err := auth.GenerateSigningKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	adminSecret, err := auth.NewClientSecret()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DBDriver, cfg.DBDSN, cfg.DBMaxOpenConns = db.Driver, db.DSN, db.MaxOpenConns
	cfg.LookupKeys = "lk1:" + random32(t)
	cfg.MasterKey = "mk1:" + random32(t)
	cfg.IdentityKey = random32(t)
	cfg.JWTKeys = auth.EncodeSigningKey(jwtKey)
	cfg.BootstrapAdminSecret = adminSecret
	cfg.ShutdownTimeout = 5 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clk := clock.NewFake(start)
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := server.Assemble(ctx, cfg, log, clk, grpcLis, httpLis)
	if err != nil {
		cancel()
		t.Fatalf("assemble server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx) }()
	// Over TLS too, pinned to the served certificate, like the gateway.
	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(app.LoopbackCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		_ = app.Close()
	})
	scheme := "http://"
	if app.TLS() {
		scheme = "https://"
	}
	return &Server{
		App: app, Clock: clk, Conn: conn, HTTPBase: scheme + httpLis.Addr().String(),
		AdminID: cfg.BootstrapAdminID, AdminSecret: adminSecret, logs: logs,
	}
}

func random32(t testing.TB) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b[:])
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
