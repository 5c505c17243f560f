package server_test

// The end-to-end harness: the real server (server.Assemble, the same wiring enrolld runs) on
// loopback ports, a fresh database per test on every engine gormtest offers, a fake clock,
// generated gRPC clients and a plain net/http client for the REST gateway.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/clock"
	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/server"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// t0 is where every fake clock starts unless a test says otherwise.
var t0 = time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)

// shutdownTimeout is the harness servers' drain budget.
const shutdownTimeout = 5 * time.Second

// forEachEngine runs fn as a parallel subtest per database engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, e gormtest.Engine)) {
	t.Helper()
	for _, e := range gormtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, e)
		})
	}
}

// harness is one running server and clients for it.
type harness struct {
	engine      gormtest.Engine
	db          gormstore.Config
	app         *server.Assembled
	clock       *clock.Fake
	conn        *grpc.ClientConn
	base        string // http://127.0.0.1:port
	httpc       *http.Client
	adminID     string
	adminSecret string
	jwtKey      auth.SigningKey
	logs        *syncBuffer

	admin     enrollv1.AdminServiceClient
	redeem    enrollv1.RedemptionServiceClient
	partner   enrollv1.PartnerServiceClient
	reporting enrollv1.ReportingServiceClient
	authc     enrollv1.AuthServiceClient

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopDur  time.Duration
	stopErr  error

	mu     sync.Mutex
	tokens map[string]cachedToken
}

type cachedToken struct {
	token string
	exp   time.Time
}

// start runs a production-mode server with fresh secrets on a fresh database of engine e,
// its fake clock at at, until t ends. opts adjust the configuration before it is validated.
func start(t *testing.T, e gormtest.Engine, at time.Time, opts ...func(*config.Config)) *harness {
	t.Helper()
	jwtKey, err := auth.GenerateSigningKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		engine: e, db: e.Config(t), clock: clock.NewFake(at), jwtKey: jwtKey,
		logs: &syncBuffer{}, tokens: map[string]cachedToken{}, done: make(chan error, 1),
	}
	cfg := config.Default()
	cfg.Mode = config.ModeProduction
	cfg.DBDriver, cfg.DBDSN, cfg.DBMaxOpenConns = h.db.Driver, h.db.DSN, h.db.MaxOpenConns
	cfg.LookupKeys = "lk1:" + random32(t)
	cfg.MasterKey = "mk1:" + random32(t)
	cfg.IdentityKey = random32(t)
	cfg.JWTKeys = auth.EncodeSigningKey(jwtKey)
	cfg.BootstrapAdminSecret = "bootstrap-" + random32(t)
	cfg.ShutdownTimeout = shutdownTimeout
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	h.adminID, h.adminSecret = cfg.BootstrapAdminID, cfg.BootstrapAdminSecret

	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := server.Assemble(ctx, cfg, log, h.clock, grpcLis, httpLis)
	if err != nil {
		cancel()
		_ = grpcLis.Close()
		_ = httpLis.Close()
		t.Fatalf("assemble: %v", err)
	}
	h.app, h.cancel = app, cancel
	go func() { h.done <- app.Serve(ctx) }()
	t.Cleanup(func() {
		if _, err := h.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	h.conn, err = grpc.NewClient(app.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.conn.Close() })
	h.base = "http://" + app.HTTPAddr().String()
	h.httpc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(h.httpc.CloseIdleConnections)
	h.admin = enrollv1.NewAdminServiceClient(h.conn)
	h.redeem = enrollv1.NewRedemptionServiceClient(h.conn)
	h.partner = enrollv1.NewPartnerServiceClient(h.conn)
	h.reporting = enrollv1.NewReportingServiceClient(h.conn)
	h.authc = enrollv1.NewAuthServiceClient(h.conn)
	return h
}

// stop cancels the serve context, waits for Serve to return (bounded) and closes the store.
// It runs once; later calls return the first result.
func (h *harness) stop() (time.Duration, error) {
	h.stopOnce.Do(func() {
		began := time.Now()
		h.cancel()
		select {
		case h.stopErr = <-h.done:
		case <-time.After(3 * h.app.Config.ShutdownTimeout):
			h.stopErr = errStuck
		}
		h.stopDur = time.Since(began)
		if err := h.app.Close(); err != nil && h.stopErr == nil {
			h.stopErr = err
		}
	})
	return h.stopDur, h.stopErr
}

var errStuck = errors.New("Serve did not return after its context was cancelled")

func random32(t testing.TB) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b[:])
}

// token returns an access token for a client, reusing one while it is valid on the fake
// clock: secret verification is deliberately slow.
func (h *harness) token(t testing.TB, id, secret string) string {
	t.Helper()
	h.mu.Lock()
	c, ok := h.tokens[id]
	h.mu.Unlock()
	if ok && h.clock.Now().Before(c.exp.Add(-time.Minute)) {
		return c.token
	}
	resp, err := h.authc.Token(context.Background(), &enrollv1.TokenRequest{GrantType: "client_credentials", ClientId: id, ClientSecret: secret})
	if err != nil {
		t.Fatalf("token for %s: %v", id, err)
	}
	if resp.GetTokenType() != "Bearer" || resp.GetExpiresIn() != int64((15*time.Minute)/time.Second) {
		t.Fatalf("token for %s: type %q expires_in %d, want Bearer and 900", id, resp.GetTokenType(), resp.GetExpiresIn())
	}
	h.mu.Lock()
	h.tokens[id] = cachedToken{token: resp.GetAccessToken(), exp: h.clock.Now().Add(time.Duration(resp.GetExpiresIn()) * time.Second)}
	h.mu.Unlock()
	return resp.GetAccessToken()
}

func (h *harness) adminToken(t testing.TB) string { return h.token(t, h.adminID, h.adminSecret) }

// adminCtx is a context carrying the bootstrap admin's bearer token.
func (h *harness) adminCtx(t testing.TB) context.Context { return bearer(h.adminToken(t)) }

func bearer(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// wantCode fails t unless err carries code c (and, for errors, a non-empty message that
// contains every fragment).
func wantCode(t testing.TB, what string, err error, c codes.Code, fragments ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != c {
		t.Fatalf("%s: got %v (%q), want %v", what, st.Code(), st.Message(), c)
	}
	if c == codes.OK {
		return
	}
	if st.Message() == "" {
		t.Fatalf("%s: %v with an empty message", what, c)
	}
	for _, f := range fragments {
		if !strings.Contains(strings.ToLower(st.Message()), strings.ToLower(f)) {
			t.Fatalf("%s: message %q does not mention %q", what, st.Message(), f)
		}
	}
}

// httpResp is a gateway response.
type httpResp struct {
	status int
	header http.Header
	body   []byte
}

// do sends a REST call. body is a string (sent as is), nil (no body) or marshalled as JSON.
func (h *harness) do(t testing.TB, method, path, token string, body any, headers ...string) httpResp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return httpResp{status: resp.StatusCode, header: resp.Header, body: raw}
}

// ok decodes a 200 response as a JSON object, failing t on any other status.
func (r httpResp) ok(t testing.TB, what string) map[string]any {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s: HTTP %d, want 200; body %s", what, r.status, r.body)
	}
	return r.object(t, what)
}

func (r httpResp) object(t testing.TB, what string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%s: body is not a JSON object: %v; body %s", what, err, r.body)
	}
	return m
}

// wantError checks an error response: the HTTP status and a JSON body whose "message" is
// non-empty and mentions every fragment.
func (r httpResp) wantError(t testing.TB, what string, status int, fragments ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: HTTP %d, want %d; body %s", what, r.status, status, r.body)
	}
	msg, _ := r.object(t, what)["message"].(string)
	if msg == "" {
		t.Fatalf("%s: error body without a message: %s", what, r.body)
	}
	for _, f := range fragments {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(f)) {
			t.Fatalf("%s: message %q does not mention %q", what, msg, f)
		}
	}
}

// get walks a decoded JSON object along keys.
func get(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[k]
	}
	return v
}

// str is get for string leaves ("" if absent or not a string).
func str(m map[string]any, keys ...string) string {
	s, _ := get(m, keys...).(string)
	return s
}

// syncBuffer is a goroutine-safe log sink.
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
