package server

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/idprotect/enroll/api"
	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/web"
)

// gateway is the REST front end. It calls the gRPC server over a loopback connection rather
// than invoking the services in process, so every REST call passes the same interceptors
// (request id, logging, recovery, auth, limits) as a gRPC call.
type gateway struct {
	conn    *grpc.ClientConn
	handler http.Handler
}

func newGateway(ctx context.Context, grpcAddr net.Addr, creds credentials.TransportCredentials, log *slog.Logger, corsOrigins []string) (*gateway, error) {
	target := DialTarget(grpcAddr)
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("failed to dial gRPC at %s: %w", target, err)
	}
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			// snake_case field names, as in the proto and the OpenAPI document (and as OAuth
			// clients expect of /v1/token).
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithHealthzEndpoint(healthpb.NewHealthClient(conn)),
		runtime.WithErrorHandler(errorHandler),
	)
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		enrollv1.RegisterAdminServiceHandler,
		enrollv1.RegisterRedemptionServiceHandler,
		enrollv1.RegisterPartnerServiceHandler,
		enrollv1.RegisterReportingServiceHandler,
		enrollv1.RegisterAuthServiceHandler,
	} {
		if err := register(ctx, mux, conn); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("failed to register gateway handler: %w", err)
		}
	}
	root := http.NewServeMux()
	root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(api.OpenAPI)
	})
	// The redemption page: GET / exactly and /assets/, more specific than "/" so the API
	// routes below keep everything else.
	web.Register(root)
	root.Handle("/", mux)
	return &gateway{conn: conn, handler: securityHeaders(cors(corsOrigins, root))}, nil
}

// DialTarget turns the gRPC listen address into one the gateway can dial: an unspecified
// host (":9090", "[::]:9090") becomes loopback.
func DialTarget(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// incomingHeader forwards the headers the gRPC side needs besides the gateway's defaults.
func incomingHeader(key string) (string, bool) {
	switch k := textproto.CanonicalMIMEHeaderKey(key); k {
	case "X-Request-Id", "Idempotency-Key":
		return strings.ToLower(k), true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// outgoingHeader exposes the request id as a plain header; other gRPC response metadata is
// internal and stays off the HTTP response.
func outgoingHeader(key string) (string, bool) {
	if key == requestIDHeader {
		return "X-Request-Id", true
	}
	return "", false
}

// securityHeaders applies to every response: nothing here should be cached by a shared cache,
// sniffed into another content type, framed, or load anything. The page (package web) sets
// its own, wider Content-Security-Policy on top.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}

// errorHandler is the gateway's default error rendering plus Retry-After on rate-limited
// (429) and unavailable (503) answers, taken from the status's RetryInfo.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				secs := int64(math.Ceil(ri.GetRetryDelay().AsDuration().Seconds()))
				w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
			}
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}
