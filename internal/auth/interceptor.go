package auth

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MissingTokenMessage is the Unauthenticated message for calls without a
// bearer token. It tells integrators how to obtain one, since this is the
// first error every new partner integration hits.
const MissingTokenMessage = "missing bearer token: call AuthService.Token with your client credentials and send Authorization: Bearer <token>"

// Rule says who may call one gRPC method.
type Rule struct {
	// Public methods (e.g. the token endpoint itself, health checks) need no
	// token. Roles is ignored for them.
	Public bool
	// Roles lists the roles allowed to call a non-public method. An empty
	// list allows nobody.
	Roles []Role
}

// Policy maps full gRPC method names ("/enroll.v1.AdminService/CreateIncident")
// to who may call them. Methods missing from the policy are denied, so that a
// newly added RPC is unreachable until someone decides who may call it.
type Policy map[string]Rule

// Validate checks that every rule names only known roles and that methods
// (full method names, as produced by MethodsOf) are all covered by a rule.
// Run it at startup so a forgotten rule fails deployment instead of failing
// every call to that method at runtime.
func (p Policy) Validate(methods []string) error {
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(p)) {
		for _, r := range p[name].Roles {
			if !r.Valid() {
				problems = append(problems, fmt.Sprintf("%s: unknown role %q", name, r))
			}
		}
	}
	for _, m := range methods {
		if _, ok := p[m]; !ok {
			problems = append(problems, m+": no access rule")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("access policy: %s", strings.Join(problems, "; "))
	}
	return nil
}

// MethodsOf lists the full method names of every method registered on a
// server, in sorted order; pass server.GetServiceInfo() and feed the result
// to Policy.Validate.
func MethodsOf(services map[string]grpc.ServiceInfo) []string {
	var out []string
	for svc, info := range services {
		for _, m := range info.Methods {
			out = append(out, "/"+svc+"/"+m.Name)
		}
	}
	sort.Strings(out)
	return out
}

// UnaryServerInterceptor authenticates unary calls and enforces policy. The
// handler sees the caller via PrincipalFrom. It panics if tokens is nil,
// because a server that cannot verify tokens must not start.
func UnaryServerInterceptor(tokens *Tokens, policy Policy) grpc.UnaryServerInterceptor {
	g := newGuard(tokens, policy)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := g.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor authenticates streaming calls and enforces policy.
// The handler's stream Context carries the caller for PrincipalFrom. It
// panics if tokens is nil, for the same reason as UnaryServerInterceptor.
func StreamServerInterceptor(tokens *Tokens, policy Policy) grpc.StreamServerInterceptor {
	g := newGuard(tokens, policy)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := g.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
	}
}

// principalStream overrides Context so stream handlers see the principal.
type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the context enriched with the principal.
func (s *principalStream) Context() context.Context { return s.ctx }

// guard holds the interceptor state shared by the unary and stream variants.
type guard struct {
	tokens *Tokens
	policy Policy
}

func newGuard(tokens *Tokens, policy Policy) *guard {
	if tokens == nil {
		panic("auth: interceptor needs a non-nil *Tokens")
	}
	// Copy the policy so that later edits to the caller's map cannot change
	// access rules of a running server.
	cp := make(Policy, len(policy))
	for m, r := range policy {
		cp[m] = Rule{Public: r.Public, Roles: slices.Clone(r.Roles)}
	}
	return &guard{tokens: tokens, policy: cp}
}

// authorize returns ctx with the caller's principal attached, or a gRPC
// status error. Every path that does not positively establish access denies.
func (g *guard) authorize(ctx context.Context, method string) (context.Context, error) {
	rule, ok := g.policy[method]
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "method has no access rule")
	}
	raw, err := bearerToken(ctx)
	if rule.Public {
		// A token on a public call is optional; attach it when it is valid so
		// handlers can audit who called, and ignore it otherwise.
		if err == nil && raw != "" {
			if p, verr := g.tokens.Verify(raw); verr == nil {
				ctx = WithPrincipal(ctx, p)
			}
		}
		return ctx, nil
	}
	if err != nil {
		return nil, err
	}
	if raw == "" {
		return nil, status.Error(codes.Unauthenticated, MissingTokenMessage)
	}
	p, err := g.tokens.Verify(raw)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if !slices.Contains(rule.Roles, p.Role) {
		return nil, status.Errorf(codes.PermissionDenied, "role %s may not call %s", p.Role, shortMethod(method))
	}
	return WithPrincipal(ctx, p), nil
}

// bearerToken extracts the token from the "authorization" metadata (which
// grpc-gateway fills from the HTTP Authorization header). It returns "" and
// no error when there is no header. Multiple headers are rejected rather
// than guessing which one the caller meant.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", status.Error(codes.Unauthenticated, "multiple authorization headers")
	}
	v := strings.TrimSpace(vals[0])
	if v == "" {
		return "", nil
	}
	scheme, token, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", status.Error(codes.Unauthenticated, "authorization header must use the Bearer scheme: Authorization: Bearer <token>")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", nil
	}
	return token, nil
}

// shortMethod turns "/enroll.v1.AdminService/CreateIncident" into
// "AdminService.CreateIncident" for error messages.
func shortMethod(full string) string {
	svc, m, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !ok {
		return full
	}
	if i := strings.LastIndex(svc, "."); i >= 0 {
		svc = svc[i+1:]
	}
	return svc + "." + m
}
