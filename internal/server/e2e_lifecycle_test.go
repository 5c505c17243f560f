package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

func shortShutdown(c *config.Config) { c.ShutdownTimeout = time.Second }

// watchHealth opens a health Watch stream and returns it after its first (SERVING) update.
func watchHealth(t *testing.T, h *harness, ctx context.Context) healthpb.Health_WatchClient {
	t.Helper()
	w, err := healthpb.NewHealthClient(h.conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first health update: %v, %v; want SERVING", first, err)
	}
	return w
}

// wantDown checks that nothing answers any more: no TCP connection, no HTTP health, no gRPC.
func wantDown(t *testing.T, h *harness) {
	t.Helper()
	for _, addr := range []string{h.app.GRPCAddr().String(), h.app.HTTPAddr().String()} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			t.Fatalf("%s still accepts connections after shutdown", addr)
		}
	}
	fresh := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := fresh.Get(h.base + "/healthz"); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("GET /healthz after shutdown: HTTP %d, want a connection error", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	wantCode(t, "gRPC health check after shutdown", err, codes.Unavailable)
}

// Cancelling the serve context turns health NOT_SERVING first, drains, and Serve returns well
// within the timeout once nothing is in flight; afterwards connections are refused.
func TestE2EGracefulShutdown(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		h.do(t, "GET", "/healthz", "", nil).ok(t, "healthz before shutdown")
		wctx, wcancel := context.WithCancel(context.Background())
		defer wcancel()
		w := watchHealth(t, h, wctx)

		type result struct {
			d   time.Duration
			err error
		}
		stopped := make(chan result, 1)
		go func() {
			d, err := h.stop()
			stopped <- result{d, err}
		}()
		next, err := w.Recv()
		if err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health update on shutdown: %v, %v; want NOT_SERVING", next, err)
		}
		wcancel() // the last open call ends; nothing holds the drain now
		select {
		case r := <-stopped:
			if r.err != nil {
				t.Fatalf("Serve: %v", r.err)
			}
			if r.d >= shutdownTimeout {
				t.Fatalf("Serve took %v with nothing in flight; it should not run into the %v timeout", r.d, shutdownTimeout)
			}
		case <-time.After(2 * shutdownTimeout):
			t.Fatalf("Serve did not return within %v of cancellation", 2*shutdownTimeout)
		}
		logs := h.logs.String()
		if !strings.Contains(logs, `"msg":"stopped"`) || strings.Contains(logs, "timed out") || strings.Contains(logs, "incomplete") {
			t.Fatalf("want a clean, logged shutdown; log:\n%s", logs)
		}
		wantDown(t, h)
	})
}

// A call that does not finish is cut off at the shutdown timeout: Serve returns anyway.
func TestE2EShutdownTimeoutCutsOffStuckCalls(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0, shortShutdown)
		w := watchHealth(t, h, context.Background()) // never cancelled by the client
		d, err := h.stop()
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
		if d < time.Second || d > 6*time.Second {
			t.Fatalf("Serve returned after %v; want soon after the 1s timeout", d)
		}
		if !strings.Contains(h.logs.String(), "grpc drain timed out") {
			t.Fatalf("the cut-off is not logged")
		}
		for {
			if _, err := w.Recv(); err != nil {
				wantCode(t, "the stuck stream", err, codes.Unavailable)
				break
			}
		}
		wantDown(t, h)
	})
}

// An in-flight call is drained, not cut: a mail-house export that is streaming when shutdown
// begins is delivered whole, and Serve returns once it is done.
func TestE2EShutdownDrainsInFlightStream(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		ctx := h.adminCtx(t)
		if _, err := h.admin.CreatePartner(ctx, &enrollv1.CreatePartnerRequest{PartnerId: "drain-monitor", Partner: &enrollv1.Partner{
			DisplayName: "Drain", EnrollmentUri: "https://drain.example/enroll"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.admin.CreateIncident(ctx, &enrollv1.CreateIncidentRequest{IncidentId: "drain-breach", Incident: &enrollv1.Incident{
			Title: "Drain", Partner: "partners/drain-monitor"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.admin.CreateCohort(ctx, &enrollv1.CreateCohortRequest{Parent: "incidents/drain-breach", CohortId: "all", Cohort: &enrollv1.Cohort{
			DisplayName: "All", ExposedData: []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_SSN}, OfferApplies: true}}); err != nil {
			t.Fatal(err)
		}
		const n = 3000
		rows := make([]*enrollv1.SubjectRecord, n)
		for i := range rows {
			rows[i] = &enrollv1.SubjectRecord{ExternalRef: fmt.Sprintf("D-%05d", i), Cohort: "all", LastName: "Drain", Ssn: fmt.Sprintf("%04d", i), PostalCode: "10001"}
		}
		if imp := h.importSubjects(t, ctx, "incidents/drain-breach", rows); imp.GetCreated() != n {
			t.Fatalf("import: %v", imp)
		}
		b := h.issue(t, ctx, "incidents/drain-breach/cohorts/all")
		if b.GetIssued() != n {
			t.Fatalf("IssueCodes: %v", b)
		}

		// Fixed 64 KiB flow-control windows: the server cannot push the whole export ahead,
		// so its handler is still sending when shutdown begins.
		conn, err := grpc.NewClient(h.app.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stream, err := enrollv1.NewAdminServiceClient(conn).ExportBatchCodes(ctx, &enrollv1.ExportBatchCodesRequest{Name: b.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got := len(first.GetCodes())

		stopped := make(chan error, 1)
		go func() { _, err := h.stop(); stopped <- err }()
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(h.logs.String(), "shutting down"); {
			if time.Now().After(deadline) {
				t.Fatal("shutdown did not begin")
			}
			time.Sleep(5 * time.Millisecond)
		}
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("export cut off after %d of %d rows: %v", got, n, err)
			}
			got += len(chunk.GetCodes())
		}
		if got != n {
			t.Fatalf("export delivered %d rows, want %d", got, n)
		}
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
		case <-time.After(2 * shutdownTimeout):
			t.Fatal("Serve did not return after the drained stream ended")
		}
		logs := h.logs.String()
		began := strings.Index(logs, "shutting down")
		export := strings.Index(logs, `"method":"/enroll.v1.AdminService/ExportBatchCodes","code":"OK"`)
		if export < began {
			t.Fatalf("the export finished before shutdown began (log offsets %d < %d); it was not in flight", export, began)
		}
		wantDown(t, h)
	})
}

var generatedID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// A well-formed X-Request-Id is echoed (on success and on error) and logged; otherwise a fresh
// one is made and returned.
func TestE2ERequestID(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		ok := h.do(t, "GET", "/.well-known/jwks.json", "", nil, "X-Request-Id", "abc-123")
		ok.ok(t, "jwks")
		if got := ok.header.Get("X-Request-Id"); got != "abc-123" {
			t.Fatalf("X-Request-Id on success = %q, want abc-123", got)
		}
		fail := h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": unknownCode(t)}, "X-Request-Id", "err-456")
		fail.wantError(t, "unknown code", http.StatusNotFound)
		if got := fail.header.Get("X-Request-Id"); got != "err-456" {
			t.Fatalf("X-Request-Id on error = %q, want err-456", got)
		}
		if !strings.Contains(h.logs.String(), `"request_id":"abc-123"`) || !strings.Contains(h.logs.String(), `"request_id":"err-456"`) {
			t.Fatalf("the given request ids are not in the log")
		}

		seen := map[string]bool{}
		for _, hdr := range [][]string{nil, nil, {"X-Request-Id", "has spaces and ;"}, {"X-Request-Id", strings.Repeat("a", 65)}} {
			r := h.do(t, "GET", "/.well-known/jwks.json", "", nil, hdr...)
			r.ok(t, "jwks")
			id := r.header.Get("X-Request-Id")
			if !generatedID.MatchString(id) || seen[id] || (len(hdr) == 2 && id == hdr[1]) {
				t.Fatalf("request with %q got X-Request-Id %q; want a fresh well-formed id", hdr, id)
			}
			seen[id] = true
		}

		var md metadata.MD
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "grpc-789")
		if _, err := h.authc.GetJwks(ctx, &enrollv1.GetJwksRequest{}, grpc.Header(&md)); err != nil {
			t.Fatal(err)
		}
		if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "grpc-789" {
			t.Fatalf("gRPC x-request-id header = %v, want grpc-789", got)
		}
	})
}
