// Package server wires the gRPC server, the REST gateway in front of it, health, reflection
// and the OpenAPI document, and shuts them down in order. It holds no business logic.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/service"
	"github.com/idprotect/enroll/internal/store"
)

// Options configure a Server.
type Options struct {
	Services *service.Services
	Tokens   *auth.Tokens
	Store    store.Store
	Logger   *slog.Logger
	// GRPCListener and HTTPListener are bound by the caller (tests pass 127.0.0.1:0).
	GRPCListener net.Listener
	HTTPListener net.Listener
	// ShutdownTimeout bounds how long in-flight calls may take to drain.
	ShutdownTimeout time.Duration
	// Unary are further interceptors, run after authentication in this order (rate limits,
	// then idempotency).
	Unary []grpc.UnaryServerInterceptor
	// Stream are further stream interceptors, run after authentication.
	Stream []grpc.StreamServerInterceptor
	// CORSOrigins may call the public redemption API from browsers (exact origins, e.g.
	// https://partner.example); none by default.
	CORSOrigins []string
	// Workers run in the background while serving (the issuance runner) and are stopped
	// after the listeners have drained.
	Workers []func(ctx context.Context)
	// Metrics is the server's registry; nil makes a fresh one.
	Metrics *Metrics
	// MetricsListener, if set, serves /metrics alone; otherwise /metrics is on HTTPListener.
	MetricsListener net.Listener
	// Certs, if set, makes every listener serve TLS with its certificate, checked for
	// changes every TLSReloadInterval (default 1m).
	Certs             *Certs
	TLSReloadInterval time.Duration
}

// Server is the running pair of listeners.
type Server struct {
	opts    Options
	grpc    *grpc.Server
	health  *health.Server
	http    *http.Server
	metrics *http.Server // nil when /metrics is on the REST listener
	gateway *gateway
}

// New builds the servers; nothing listens until Serve.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Services == nil || o.Tokens == nil || o.Store == nil || o.Logger == nil || o.GRPCListener == nil || o.HTTPListener == nil {
		return nil, errors.New("server: every option is required")
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 20 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.TLSReloadInterval == 0 {
		o.TLSReloadInterval = time.Minute
	}
	policy := service.Policy()
	// Metrics outermost, so calls refused by authentication or limits are counted too.
	unary := append([]grpc.UnaryServerInterceptor{o.Metrics.rpc.UnaryServerInterceptor()}, unaryChain(o.Logger, o.Tokens, policy)...)
	stream := append([]grpc.StreamServerInterceptor{o.Metrics.rpc.StreamServerInterceptor()}, streamChain(o.Logger, o.Tokens, policy)...)
	// Error mapping innermost: handlers return domain errors, and every link above sees the
	// final status code.
	mapUnary, mapStream := service.ErrorMapping(o.Logger)
	unary = append(append(unary, o.Unary...), mapUnary)
	stream = append(append(stream, o.Stream...), mapStream)
	gopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(8 << 20),
	}
	if o.Certs != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(o.Certs.ServerConfig())))
	}
	gs := grpc.NewServer(gopts...)
	enrollv1.RegisterAdminServiceServer(gs, o.Services.Admin)
	enrollv1.RegisterRedemptionServiceServer(gs, o.Services.Redemption)
	enrollv1.RegisterPartnerServiceServer(gs, o.Services.Partner)
	enrollv1.RegisterReportingServiceServer(gs, o.Services.Reporting)
	enrollv1.RegisterAuthServiceServer(gs, o.Services.Auth)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	// Fail at start-up, not at the first call, if an RPC was added without an access rule.
	if err := policy.Validate(auth.MethodsOf(gs.GetServiceInfo())); err != nil {
		return nil, fmt.Errorf("access policy incomplete: %w", err)
	}
	// Every method at zero from the start, so a rate over a quiet method is 0, not absent.
	o.Metrics.rpc.InitializeMetrics(gs)

	gw, err := newGateway(ctx, o.GRPCListener.Addr(), loopbackCredentials(o.Certs), o.Logger, o.CORSOrigins)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, grpc: gs, health: hs, gateway: gw}
	handler := gw.handler
	if o.MetricsListener != nil {
		s.metrics = s.httpServer(o.Metrics.handler())
	} else {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", o.Metrics.handler())
		mux.Handle("/", gw.handler)
		handler = mux
	}
	s.http = s.httpServer(handler)
	return s, nil
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		// Into the server's log rather than stderr: failed handshakes after a certificate
		// change are worth seeing there.
		ErrorLog: slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
	}
	if s.opts.Certs != nil {
		hs.TLSConfig = s.opts.Certs.ServerConfig()
	}
	return hs
}

// serveHTTP serves hs on l (TLS if configured) until hs is shut down.
func (s *Server) serveHTTP(hs *http.Server, l net.Listener) error {
	var err error
	if s.opts.Certs != nil {
		// The certificate comes from TLSConfig.GetCertificate, so no files here.
		err = hs.ServeTLS(l, "", "")
	} else {
		err = hs.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Serve runs both listeners until ctx is cancelled, then shuts down gracefully: health goes
// NOT_SERVING so load balancers stop sending work, the HTTP gateway drains (its calls are gRPC
// calls, so it goes first), then gRPC drains; whatever is still running after the timeout is
// cut off.
func (s *Server) Serve(ctx context.Context) error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 3)
	go func() { errc <- s.grpc.Serve(s.opts.GRPCListener) }()
	go func() { errc <- s.serveHTTP(s.http, s.opts.HTTPListener) }()
	if s.metrics != nil {
		go func() { errc <- s.serveHTTP(s.metrics, s.opts.MetricsListener) }()
	}
	wctx, stopWorkers := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	for _, w := range s.opts.Workers {
		workers.Go(func() { w(wctx) })
	}
	if s.opts.Certs != nil {
		workers.Go(func() { s.opts.Certs.Watch(wctx, s.opts.TLSReloadInterval) })
	}
	s.opts.Logger.Info("serving", "grpc", s.opts.GRPCListener.Addr().String(), "http", s.opts.HTTPListener.Addr().String(),
		"metrics", s.MetricsAddr().String(), "tls", s.opts.Certs != nil)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.opts.Logger.Info("shutting down", "timeout", s.opts.ShutdownTimeout.String())
	s.health.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(sctx); err != nil {
		s.opts.Logger.Warn("http shutdown incomplete", "err", err)
	}
	if s.metrics != nil {
		_ = s.metrics.Shutdown(sctx)
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		s.opts.Logger.Warn("grpc drain timed out; closing remaining calls")
		s.grpc.Stop()
	}
	_ = s.gateway.conn.Close()
	// Workers stop between units of work (an issuance chunk is one transaction), so this is
	// quick; what they leave unfinished resumes on the next start.
	stopWorkers()
	workers.Wait()
	s.opts.Logger.Info("stopped")
	return serveErr
}

// GRPCAddr is the gRPC listener's address.
func (s *Server) GRPCAddr() net.Addr { return s.opts.GRPCListener.Addr() }

// HTTPAddr is the REST gateway listener's address.
func (s *Server) HTTPAddr() net.Addr { return s.opts.HTTPListener.Addr() }

// MetricsAddr is where /metrics is served: its own listener, or the REST one.
func (s *Server) MetricsAddr() net.Addr {
	if s.opts.MetricsListener != nil {
		return s.opts.MetricsListener.Addr()
	}
	return s.opts.HTTPListener.Addr()
}

// Metrics is the server's registry.
func (s *Server) Metrics() *Metrics { return s.opts.Metrics }

// TLS says whether the listeners serve TLS.
func (s *Server) TLS() bool { return s.opts.Certs != nil }

// ReloadTLS re-reads the certificate files now (enrolld calls it on SIGHUP). Without TLS it
// is an error, so an operator's SIGHUP is not silently a no-op.
func (s *Server) ReloadTLS() error {
	if s.opts.Certs == nil {
		return errors.New("no TLS certificate is configured (--tls-cert, --tls-key); nothing to reload")
	}
	return s.opts.Certs.Reload()
}

// LoopbackCredentials are transport credentials for a client in this process dialling the
// gRPC listener (see Certs.LoopbackCredentials).
func (s *Server) LoopbackCredentials() credentials.TransportCredentials {
	return loopbackCredentials(s.opts.Certs)
}
