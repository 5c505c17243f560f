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
}

// Server is the running pair of listeners.
type Server struct {
	opts    Options
	grpc    *grpc.Server
	health  *health.Server
	http    *http.Server
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
	policy := service.Policy()
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(append(unaryChain(o.Logger, o.Tokens, policy), o.Unary...)...),
		grpc.ChainStreamInterceptor(append(streamChain(o.Logger, o.Tokens, policy), o.Stream...)...),
		grpc.MaxRecvMsgSize(8<<20),
	)
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

	gw, err := newGateway(ctx, o.GRPCListener.Addr(), o.Logger, o.CORSOrigins)
	if err != nil {
		return nil, err
	}
	return &Server{
		opts: o, grpc: gs, health: hs, gateway: gw,
		http: &http.Server{
			Handler:           gw.handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			IdleTimeout:       120 * time.Second,
		},
	}, nil
}

// Serve runs both listeners until ctx is cancelled, then shuts down gracefully: health goes
// NOT_SERVING so load balancers stop sending work, the HTTP gateway drains (its calls are gRPC
// calls, so it goes first), then gRPC drains; whatever is still running after the timeout is
// cut off.
func (s *Server) Serve(ctx context.Context) error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(s.opts.GRPCListener) }()
	go func() {
		if err := s.http.Serve(s.opts.HTTPListener); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	wctx, stopWorkers := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	for _, w := range s.opts.Workers {
		workers.Go(func() { w(wctx) })
	}
	s.opts.Logger.Info("serving", "grpc", s.opts.GRPCListener.Addr().String(), "http", s.opts.HTTPListener.Addr().String())

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
