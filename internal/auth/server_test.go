package auth

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	mHealthCheck = "/grpc.health.v1.Health/Check"
	mHealthWatch = "/grpc.health.v1.Health/Watch"
	mHealthList  = "/grpc.health.v1.Health/List"
)

// startServer runs a real gRPC server on a loopback port with the health
// service behind both interceptors, and returns a client for it.
func startServer(t *testing.T, env *testEnv, policy Policy) healthpb.HealthClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(UnaryServerInterceptor(env.tokens, policy)),
		grpc.ChainStreamInterceptor(StreamServerInterceptor(env.tokens, policy)),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if err := policy.Validate(MethodsOf(srv.GetServiceInfo())); err != nil {
		t.Fatalf("policy does not cover the server: %v", err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func TestInterceptorsOverGRPC(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	client := startServer(t, env, Policy{
		mHealthCheck: {Roles: []Role{RoleAdmin}},
		mHealthWatch: {Roles: []Role{RoleAdmin, RoleFinance}},
		mHealthList:  {Public: true},
	})
	adminTok := env.issue(t, adminP)
	partnerTok := env.issue(t, partnerP)
	tests := []struct {
		name     string
		token    string
		call     func(ctx context.Context) error
		wantCode codes.Code
	}{
		{name: "unary without token", call: check(client), wantCode: codes.Unauthenticated},
		{name: "unary with wrong role", token: partnerTok, call: check(client), wantCode: codes.PermissionDenied},
		{name: "unary with admin", token: adminTok, call: check(client), wantCode: codes.OK},
		{name: "unary with tampered token", token: adminTok + "x", call: check(client), wantCode: codes.Unauthenticated},
		{name: "public without token", call: list(client), wantCode: codes.OK},
		{name: "stream without token", call: watch(client), wantCode: codes.Unauthenticated},
		{name: "stream with wrong role", token: partnerTok, call: watch(client), wantCode: codes.PermissionDenied},
		{name: "stream with admin", token: adminTok, call: watch(client), wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tt.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tt.token)
			}
			err := tt.call(ctx)
			if status.Code(err) != tt.wantCode {
				t.Errorf("code = %v (%v), want %v", status.Code(err), err, tt.wantCode)
			}
		})
	}
}

func check(c healthpb.HealthClient) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
}

func list(c healthpb.HealthClient) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.List(ctx, &healthpb.HealthListRequest{})
		return err
	}
}

// watch opens the server stream and reads the first status, which the
// health server sends immediately once the handler runs.
func watch(c healthpb.HealthClient) func(context.Context) error {
	return func(ctx context.Context) error {
		stream, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	methods := MethodsOf(map[string]grpc.ServiceInfo{
		"grpc.health.v1.Health": {Methods: []grpc.MethodInfo{{Name: "Check"}, {Name: "Watch"}, {Name: "List"}}},
	})
	if strings.Join(methods, " ") != mHealthCheck+" "+mHealthList+" "+mHealthWatch {
		t.Fatalf("MethodsOf = %v", methods)
	}
	tests := []struct {
		name    string
		policy  Policy
		wantErr string
	}{
		{name: "complete", policy: Policy{mHealthCheck: {Public: true}, mHealthWatch: {Roles: []Role{RoleAdmin}}, mHealthList: {}}},
		{name: "extra rules are fine", policy: Policy{mHealthCheck: {}, mHealthWatch: {}, mHealthList: {}, mToken: {Public: true}}},
		{name: "missing rule", policy: Policy{mHealthCheck: {}, mHealthList: {}}, wantErr: mHealthWatch + ": no access rule"},
		{name: "unknown role", policy: Policy{mHealthCheck: {}, mHealthWatch: {Roles: []Role{"admin"}}, mHealthList: {}}, wantErr: `unknown role "admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.policy.Validate(methods)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}
