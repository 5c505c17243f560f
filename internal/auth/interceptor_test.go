package auth

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	mToken          = "/enroll.v1.AuthService/Token"
	mCreateIncident = "/enroll.v1.AdminService/CreateIncident"
	mEnroll         = "/enroll.v1.PartnerService/Enroll"
	mLocked         = "/enroll.v1.AdminService/Locked"
	mUnlisted       = "/enroll.v1.AdminService/DeleteEverything"
)

var testPolicy = Policy{
	mToken:          {Public: true},
	mCreateIncident: {Roles: []Role{RoleAdmin}},
	mEnroll:         {Roles: []Role{RolePartner, RoleAdmin}},
	mLocked:         {},
}

var (
	adminP   = Principal{ClientID: "cli_admin", Role: RoleAdmin}
	partnerP = Principal{ClientID: "cli_partner", Role: RolePartner, PartnerID: "acme"}
)

// authCase describes one call through an interceptor. auth builds the
// authorization metadata values (none when nil).
type authCase struct {
	name          string
	method        string
	auth          func(t *testing.T, e *testEnv) []string
	expire        bool
	wantCode      codes.Code
	wantMsg       string
	wantPrincipal *Principal
}

func bearer(p Principal) func(t *testing.T, e *testEnv) []string {
	return func(t *testing.T, e *testEnv) []string { return []string{"Bearer " + e.issue(t, p)} }
}

func literal(vals ...string) func(*testing.T, *testEnv) []string {
	return func(*testing.T, *testEnv) []string { return vals }
}

var authCases = []authCase{
	{name: "admin calls admin method", method: mCreateIncident, auth: bearer(adminP), wantPrincipal: &adminP},
	{name: "partner calls partner method", method: mEnroll, auth: bearer(partnerP), wantPrincipal: &partnerP},
	{name: "lowercase bearer scheme", method: mCreateIncident, wantPrincipal: &adminP, auth: func(t *testing.T, e *testEnv) []string {
		return []string{"bearer " + e.issue(t, adminP)}
	}},
	{name: "missing token", method: mCreateIncident, wantCode: codes.Unauthenticated, wantMsg: MissingTokenMessage},
	{name: "empty bearer", method: mCreateIncident, auth: literal("Bearer "), wantCode: codes.Unauthenticated, wantMsg: MissingTokenMessage},
	{name: "basic scheme", method: mCreateIncident, auth: literal("Basic Y2xpOnNlY3JldA=="), wantCode: codes.Unauthenticated, wantMsg: "Bearer scheme"},
	{name: "bare token without scheme", method: mCreateIncident, wantCode: codes.Unauthenticated, wantMsg: "Bearer scheme", auth: func(t *testing.T, e *testEnv) []string {
		return []string{e.issue(t, adminP)}
	}},
	{name: "invalid token", method: mCreateIncident, auth: literal("Bearer garbage"), wantCode: codes.Unauthenticated, wantMsg: "invalid token: malformed token"},
	{name: "expired token", method: mCreateIncident, auth: bearer(adminP), expire: true, wantCode: codes.Unauthenticated, wantMsg: "token expired"},
	{name: "two authorization headers", method: mCreateIncident, wantCode: codes.Unauthenticated, wantMsg: "multiple", auth: func(t *testing.T, e *testEnv) []string {
		return []string{"Bearer " + e.issue(t, adminP), "Bearer " + e.issue(t, partnerP)}
	}},
	{name: "wrong role", method: mCreateIncident, auth: bearer(partnerP), wantCode: codes.PermissionDenied, wantMsg: "role PARTNER may not call AdminService.CreateIncident"},
	{name: "rule with no roles", method: mLocked, auth: bearer(adminP), wantCode: codes.PermissionDenied, wantMsg: "role ADMIN may not call AdminService.Locked"},
	{name: "unknown method with valid token", method: mUnlisted, auth: bearer(adminP), wantCode: codes.PermissionDenied, wantMsg: "method has no access rule"},
	{name: "unknown method without token", method: mUnlisted, wantCode: codes.PermissionDenied, wantMsg: "method has no access rule"},
	{name: "public without token", method: mToken},
	{name: "public with valid token attaches principal", method: mToken, auth: bearer(partnerP), wantPrincipal: &partnerP},
	{name: "public with invalid token is ignored", method: mToken, auth: literal("Bearer garbage")},
	{name: "public with expired token is ignored", method: mToken, auth: bearer(adminP), expire: true},
	{name: "public with basic scheme is ignored", method: mToken, auth: literal("Basic eA==")},
}

// setup returns an incoming context for c and the env it was built with.
func (c authCase) setup(t *testing.T) (context.Context, *testEnv) {
	t.Helper()
	env := newEnv(t)
	ctx := context.Background()
	if c.auth != nil {
		var md metadata.MD = map[string][]string{"authorization": c.auth(t, env)}
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	if c.expire {
		env.clock.Advance(testTTL + Leeway + 1)
	}
	return ctx, env
}

// check compares the interceptor outcome and what the handler saw with c.
func (c authCase) check(t *testing.T, err error, called bool, got Principal, gotOK bool) {
	t.Helper()
	if status.Code(err) != c.wantCode {
		t.Fatalf("code = %v (%v), want %v", status.Code(err), err, c.wantCode)
	}
	if c.wantMsg != "" && !strings.Contains(status.Convert(err).Message(), c.wantMsg) {
		t.Errorf("message %q does not contain %q", status.Convert(err).Message(), c.wantMsg)
	}
	if called != (c.wantCode == codes.OK) {
		t.Fatalf("handler called = %v, want %v", called, c.wantCode == codes.OK)
	}
	if !called {
		return
	}
	if gotOK != (c.wantPrincipal != nil) {
		t.Fatalf("handler saw principal = %v (%+v), want %v", gotOK, got, c.wantPrincipal != nil)
	}
	if c.wantPrincipal != nil {
		want := *c.wantPrincipal
		want.TokenID = got.TokenID
		if got != want || got.TokenID == "" {
			t.Errorf("handler principal = %+v, want %+v with a token id", got, want)
		}
	}
}

func TestUnaryServerInterceptor(t *testing.T) {
	t.Parallel()
	for _, tc := range authCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, env := tc.setup(t)
			var (
				called bool
				got    Principal
				gotOK  bool
			)
			handler := func(ctx context.Context, req any) (any, error) {
				called = true
				got, gotOK = PrincipalFrom(ctx)
				return "resp", nil
			}
			intercept := UnaryServerInterceptor(env.tokens, testPolicy)
			resp, err := intercept(ctx, "req", &grpc.UnaryServerInfo{FullMethod: tc.method}, handler)
			tc.check(t, err, called, got, gotOK)
			if called && resp != "resp" {
				t.Errorf("response = %v, want the handler's", resp)
			}
		})
	}
}

// fakeStream is a grpc.ServerStream whose only behaviour is its context.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

func TestStreamServerInterceptor(t *testing.T) {
	t.Parallel()
	for _, tc := range authCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, env := tc.setup(t)
			var (
				called bool
				got    Principal
				gotOK  bool
			)
			handler := func(srv any, ss grpc.ServerStream) error {
				called = true
				got, gotOK = PrincipalFrom(ss.Context())
				return nil
			}
			intercept := StreamServerInterceptor(env.tokens, testPolicy)
			info := &grpc.StreamServerInfo{FullMethod: tc.method, IsServerStream: true}
			err := intercept(nil, fakeStream{ctx: ctx}, info, handler)
			tc.check(t, err, called, got, gotOK)
		})
	}
}

func TestInterceptorCopiesPolicy(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	policy := Policy{mCreateIncident: {Roles: []Role{RoleAdmin}}}
	intercept := UnaryServerInterceptor(env.tokens, policy)
	policy[mCreateIncident] = Rule{Public: true}
	policy[mUnlisted] = Rule{Public: true}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, m := range []string{mCreateIncident, mUnlisted} {
		_, err := intercept(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: m}, handler)
		if err == nil {
			t.Errorf("%s: editing the policy map after construction opened the method", m)
		}
	}
}

func TestInterceptorNilTokensPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("UnaryServerInterceptor(nil, ...) did not panic")
		}
	}()
	UnaryServerInterceptor(nil, testPolicy)
}

func TestShortMethod(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{name: "packaged service", in: "/enroll.v1.AdminService/CreateIncident", want: "AdminService.CreateIncident"},
		{name: "unpackaged service", in: "/Svc/M", want: "Svc.M"},
		{name: "not a method name", in: "weird", want: "weird"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := shortMethod(tt.in); got != tt.want {
				t.Errorf("shortMethod(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
