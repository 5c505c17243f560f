package server

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/requestid"
)

// requestIDHeader travels as gRPC metadata and, through the gateway, as an HTTP header.
const requestIDHeader = "x-request-id"

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// withRequestID takes the caller's request id if it is well formed (so a client can correlate
// its own logs), or makes one, and echoes it in the response header.
func withRequestID(ctx context.Context) context.Context {
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(requestIDHeader); len(v) == 1 && validRequestID.MatchString(v[0]) {
			id = v[0]
		}
	}
	if id == "" {
		id = requestid.New()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDHeader, id))
	return requestid.With(ctx, id)
}

// logCall writes one line per call: who, what, outcome, how long. Never the request or
// response body: they carry codes, secrets and tokens.
func logCall(ctx context.Context, log *slog.Logger, ci *callInfo, method string, start time.Time, err error) {
	st, _ := status.FromError(err)
	attrs := []any{
		"method", method, "code", st.Code().String(), "duration_ms", float64(time.Since(start).Microseconds()) / 1000,
		"request_id", requestid.From(ctx),
	}
	if p, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, "peer", p.Addr.String())
	}
	if ci.principal != nil {
		attrs = append(attrs, "client", ci.principal.ClientID, "role", string(ci.principal.Role))
	}
	level := slog.LevelInfo
	if st.Code() == codes.Internal || st.Code() == codes.Unknown {
		level = slog.LevelError
	}
	log.Log(ctx, level, "rpc", attrs...)
}

func recovered(ctx context.Context, log *slog.Logger, method string, r any) error {
	log.ErrorContext(ctx, "panic in handler", "method", method, "request_id", requestid.From(ctx),
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "internal error; quote request id %s when reporting it", requestid.From(ctx))
}

// callInfo is filled in by inner interceptors for the log line the outer one writes, so the
// log can name the authenticated client without verifying the token twice.
type callInfo struct{ principal *auth.Principal }

type callInfoKey struct{}

func noteCaller(ctx context.Context) {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		if p, ok := auth.PrincipalFrom(ctx); ok {
			ci.principal = &p
		}
	}
}

// The chain, outermost first, and why in this order:
//  1. request id + logging: every call gets an id and one log line with its final status,
//     including calls rejected by auth and calls that panicked.
//  2. recovery: turns a panic in auth or a handler into Internal, which logging then records.
//  3. auth: authenticates and checks the role before any handler runs.
//  4. note caller: hands the authenticated principal back out to the log line.
func unaryChain(log *slog.Logger, tokens *auth.Tokens, policy auth.Policy) []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ci := &callInfo{}
			ctx = context.WithValue(withRequestID(ctx), callInfoKey{}, ci)
			start := time.Now()
			resp, err := h(ctx, req)
			logCall(ctx, log, ci, info.FullMethod, start, err)
			return resp, err
		},
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
			defer func() {
				if r := recover(); r != nil {
					resp, err = nil, recovered(ctx, log, info.FullMethod, r)
				}
			}()
			return h(ctx, req)
		},
		auth.UnaryServerInterceptor(tokens, policy),
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			noteCaller(ctx)
			return h(ctx, req)
		},
	}
}

func streamChain(log *slog.Logger, tokens *auth.Tokens, policy auth.Policy) []grpc.StreamServerInterceptor {
	return []grpc.StreamServerInterceptor{
		func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ci := &callInfo{}
			ctx := context.WithValue(withRequestID(ss.Context()), callInfoKey{}, ci)
			start := time.Now()
			err := h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
			logCall(ctx, log, ci, info.FullMethod, start, err)
			return err
		},
		func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = recovered(ss.Context(), log, info.FullMethod, r)
				}
			}()
			return h(srv, ss)
		},
		auth.StreamServerInterceptor(tokens, policy),
		func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			noteCaller(ss.Context())
			return h(srv, ss)
		},
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }
