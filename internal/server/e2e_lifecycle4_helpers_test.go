package server_test

// Helpers for the lifecycle and abuse-resistance end-to-end tests (e2e_lifecycle4_*): clients
// whose connections come from a chosen loopback address, a second server on the same
// deployment (database, secrets, limits), a partner change-feed follower, and config options.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/store/gormstore"
)

// lc4GenerousGlobal is a global failed-look-up budget no test comes near: a day's worth, so
// that even a limiter shared through Redis with other runs never throttles a test globally.
const lc4GenerousGlobal = "1000000/24h"

// lc4CodeLimits sets the failed-look-up budgets.
func lc4CodeLimits(perAddress, global string) func(*config.Config) {
	return func(c *config.Config) {
		c.LimitCodeFailuresPerAddress, c.LimitCodeFailuresGlobal = perAddress, global
	}
}

// lc4ResendLimit sets the lost-code budget per address.
func lc4ResendLimit(l string) func(*config.Config) {
	return func(c *config.Config) { c.LimitResendPerAddress = l }
}

// lc4SweepEvery sets the sweep interval (real time; the sweeper reads the fake clock).
func lc4SweepEvery(d time.Duration) func(*config.Config) {
	return func(c *config.Config) { c.SweepInterval = d }
}

// lc4Redis shares rate-limit state through Redis.
func lc4Redis(url string) func(*config.Config) {
	return func(c *config.Config) { c.RedisURL = url }
}

// lc4SameDeployment makes a server of the same deployment as prev: the same database, the
// same secrets (codes, tokens and address keys keep working) and the same settings.
func lc4SameDeployment(prev *harness) func(*config.Config) {
	pc := prev.app.Config
	return func(c *config.Config) { *c = pc }
}

// lc4Replica starts another server of prev's deployment, its fake clock at prev's current
// time. With prev stopped first it is a restart; with prev running, a second replica.
func lc4Replica(t *testing.T, prev *harness, opts ...func(*config.Config)) *harness {
	t.Helper()
	h := start(t, prev.engine, prev.clock.Now(), append([]func(*config.Config){lc4SameDeployment(prev)}, opts...)...)
	if h.app.Config.DBDSN != prev.app.Config.DBDSN || h.app.Config.LookupKeys != prev.app.Config.LookupKeys {
		t.Fatal("the replica does not use the first server's database and keys")
	}
	h.db, h.jwtKey = prev.db, prev.jwtKey
	return h
}

// lc4Peer is a REST and gRPC client whose TCP connections come from one loopback address
// (the whole of 127.0.0.0/8 is loopback on Linux), so the server sees it as a distinct client
// address.
type lc4Peer struct {
	ip     string
	base   string
	httpc  *http.Client
	conn   *grpc.ClientConn
	redeem enrollv1.RedemptionServiceClient
	authc  enrollv1.AuthServiceClient
}

func lc4From(t *testing.T, h *harness, ip string) *lc4Peer {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 32}
	p := &lc4Peer{ip: ip, base: h.base, httpc: &http.Client{Timeout: 30 * time.Second, Transport: tr}}
	t.Cleanup(tr.CloseIdleConnections)
	conn, err := grpc.NewClient(h.app.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	p.conn, p.redeem, p.authc = conn, enrollv1.NewRedemptionServiceClient(conn), enrollv1.NewAuthServiceClient(conn)

	// The server must really see this address: a gRPC call's log line names its peer.
	rid := "peer-check-" + strings.ReplaceAll(ip, ".", "-") + "-" + lc4Nonce(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", rid)
	if _, err := p.authc.GetJwks(ctx, &enrollv1.GetJwksRequest{}); err != nil {
		t.Fatalf("GetJwks from %s: %v", ip, err)
	}
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, `"request_id":"`+rid+`"`) {
			if !strings.Contains(line, `"peer":"`+ip+`:`) {
				t.Fatalf("a call bound to %s is logged from another peer: %s", ip, line)
			}
			return p
		}
	}
	t.Fatalf("no log line for the peer check from %s", ip)
	return nil
}

// do sends a REST call from the peer's address, like harness.do.
func (p *lc4Peer) do(t testing.TB, method, path, token string, body any, headers ...string) httpResp {
	t.Helper()
	return lc4Do(t, p.httpc, p.base, method, path, token, body, headers...)
}

func lc4Do(t testing.TB, c *http.Client, base, method, path, token string, body any, headers ...string) httpResp {
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
	req, err := http.NewRequest(method, base+path, rd)
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
	resp, err := c.Do(req)
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

// lc4WrongCode is a well-formed code (random payload, correct check symbol) that was never
// issued: a guess the server has to look up.
func lc4WrongCode(t testing.TB) string {
	t.Helper()
	var b [15]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, len(b))
	for i, v := range b {
		payload[i] = enrollcodes.Alphabet[int(v)%len(enrollcodes.Alphabet)]
	}
	c, err := enrollcodes.FromPayload(string(payload))
	if err != nil {
		t.Fatal(err)
	}
	return c.String()
}

// lc4Typo is a code with a wrong check symbol: a typo, rejected before any look-up.
func lc4Typo(t testing.TB) string { return badCheckSymbol(t, lc4WrongCode(t)) }

func lc4Nonce(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// lc4RetryAfter checks a 429: a Retry-After header of whole seconds, at least 1, and a JSON
// message that tells the caller to wait. It returns the seconds.
func lc4RetryAfter(t testing.TB, what string, r httpResp, fragments ...string) int {
	t.Helper()
	r.wantError(t, what, http.StatusTooManyRequests, append([]string{"try again in"}, fragments...)...)
	ra := r.header.Get("Retry-After")
	secs, err := strconv.Atoi(ra)
	if err != nil || secs < 1 {
		t.Fatalf("%s: Retry-After %q, want whole seconds >= 1", what, ra)
	}
	if msg := str(r.object(t, what), "message"); !strings.Contains(msg, "try again in "+ra+" second") {
		t.Fatalf("%s: message %q does not match Retry-After %s", what, msg, ra)
	}
	return secs
}

// lc4Eventually polls cond until it holds or timeout passes.
func lc4Eventually(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last state: %s", what, timeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lc4Feed follows a partner's change feed the way a partner does: from after_sequence, in
// small pages, remembering the last sequence seen.
type lc4Feed struct {
	after  int64
	events []*enrollv1.EnrollmentEvent
}

// poll reads everything new over gRPC (page_size 2, so paging is exercised), checks that the
// sequences continue without gap or repeat, and returns the new events.
func (f *lc4Feed) poll(t testing.TB, h *harness, ctx context.Context) []*enrollv1.EnrollmentEvent {
	t.Helper()
	var got []*enrollv1.EnrollmentEvent
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("the change feed does not end")
		}
		resp, err := h.partner.ListEnrollmentEvents(ctx, &enrollv1.ListEnrollmentEventsRequest{AfterSequence: f.after, PageSize: 2})
		if err != nil {
			t.Fatalf("ListEnrollmentEvents after %d: %v", f.after, err)
		}
		if len(resp.GetEvents()) == 0 {
			if resp.GetLastSequence() != f.after {
				t.Fatalf("empty page after %d with last_sequence %d", f.after, resp.GetLastSequence())
			}
			return got
		}
		for _, ev := range resp.GetEvents() {
			if ev.GetSequence() != f.after+1 {
				t.Fatalf("feed after %d returned sequence %d (%s %s): want %d, no gaps or repeats", f.after, ev.GetSequence(), ev.GetType(), ev.GetResource(), f.after+1)
			}
			f.after = ev.GetSequence()
			got = append(got, ev)
			f.events = append(f.events, ev)
		}
		if resp.GetLastSequence() != f.after {
			t.Fatalf("last_sequence %d, want the last event's %d", resp.GetLastSequence(), f.after)
		}
	}
}

// lc4Ev is an expected event: type and resource.
type lc4Ev struct{ typ, resource string }

func lc4WantEvents(t testing.TB, what string, got []*enrollv1.EnrollmentEvent, want ...lc4Ev) {
	t.Helper()
	var g []string
	for _, ev := range got {
		g = append(g, ev.GetType()+" "+ev.GetResource())
	}
	var w []string
	for _, ev := range want {
		w = append(w, ev.typ+" "+ev.resource)
	}
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Fatalf("%s: events\n  %s\nwant\n  %s", what, strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
}

// lc4SQL opens the test database directly, for facts the API deliberately hides.
func lc4SQL(t testing.TB, db gormstore.Config) *gorm.DB {
	t.Helper()
	var d gorm.Dialector
	switch db.Driver {
	case gormstore.DriverPostgres:
		d = postgres.Open(db.DSN)
	case gormstore.DriverSQLite:
		d = sqlite.Open(db.DSN + "?_busy_timeout=10000")
	default:
		t.Fatalf("no direct access for driver %s", db.Driver)
	}
	g, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := g.DB(); err == nil {
		t.Cleanup(func() { _ = sqlDB.Close() })
	}
	return g
}
