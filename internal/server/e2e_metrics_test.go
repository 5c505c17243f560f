package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/limits"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// scrape is one read of /metrics: the raw text and its parsed families.
type scrape struct {
	raw string
	fam map[string]*dto.MetricFamily
}

func scrapeMetrics(t testing.TB, c *http.Client, url string) scrape {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d: %s", url, resp.StatusCode, raw)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fam, err := p.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("GET %s: not the Prometheus text format: %v", url, err)
	}
	return scrape{raw: string(raw), fam: fam}
}

// value is the counter, gauge or histogram count of the series of name whose labels include
// all of want (name=value pairs); -1 if there is none.
func (s scrape) value(name string, want ...string) float64 {
	f, ok := s.fam[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

func rpc(method string, code codes.Code) []string {
	svc, m, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	return []string{"grpc_service", svc, "grpc_method", m, "grpc_code", code.String()}
}

// /metrics counts every call by method and status code, times it, reports the database pool,
// issuance and limiter refusals, and carries nothing a caller sent: no code, token or secret.
func TestE2EMetrics(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		// Three unknown codes per address, then refusals.
		h := start(t, e, t0, lc4CodeLimits("3/1h", "1000/1m"))
		secrets := secretFlow(t, h)
		url := h.base + "/metrics"
		before := scrapeMetrics(t, h.httpc, url)

		check := enrollv1.RedemptionService_CheckCode_FullMethodName
		var unknown []string
		for range 3 {
			c := unknownCode(t)
			unknown = append(unknown, c)
			_, err := h.redeem.CheckCode(context.Background(), &enrollv1.CheckCodeRequest{Code: c})
			wantCode(t, "unknown code", err, codes.NotFound)
		}
		c := unknownCode(t)
		unknown = append(unknown, c)
		_, err := h.redeem.CheckCode(context.Background(), &enrollv1.CheckCodeRequest{Code: c})
		wantCode(t, "unknown code over the budget", err, codes.ResourceExhausted)
		// And through the gateway, which is a gRPC call too.
		h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": badCheckSymbol(t, c)}).wantError(t, "typo", http.StatusBadRequest)

		after := scrapeMetrics(t, h.httpc, url)
		delta := func(name string, labels ...string) float64 {
			return max(after.value(name, labels...), 0) - max(before.value(name, labels...), 0)
		}
		for _, w := range []struct {
			what   string
			name   string
			labels []string
			want   float64
		}{
			{"CheckCode NotFound", "grpc_server_handled_total", rpc(check, codes.NotFound), 3},
			{"CheckCode ResourceExhausted", "grpc_server_handled_total", rpc(check, codes.ResourceExhausted), 1},
			{"CheckCode InvalidArgument (REST)", "grpc_server_handled_total", rpc(check, codes.InvalidArgument), 1},
			{"CheckCode OK", "grpc_server_handled_total", rpc(check, codes.OK), 0},
			{"CheckCode started", "grpc_server_started_total", rpc(check, codes.OK)[:4], 5},
			{"CheckCode latencies", "grpc_server_handling_seconds", rpc(check, codes.OK)[:4], 5},
			{"per-address refusals", "enroll_limit_rejections_total", []string{"limit", limits.LimitCodeFailuresPerAddress}, 1},
		} {
			if got := delta(w.name, w.labels...); got != w.want {
				t.Errorf("%s: %s%v moved by %v, want %v", w.what, w.name, w.labels, got, w.want)
			}
		}
		// What secretFlow did before the first scrape.
		for _, w := range []struct {
			what   string
			method string
			code   codes.Code
		}{
			{"RedeemCode OK", enrollv1.RedemptionService_RedeemCode_FullMethodName, codes.OK},
			{"CheckCode OK", check, codes.OK},
			{"Token with a wrong secret", enrollv1.AuthService_Token_FullMethodName, codes.Unauthenticated},
			{"partner on an admin method", enrollv1.AdminService_ListIncidents_FullMethodName, codes.PermissionDenied},
			{"export stream", enrollv1.AdminService_ExportBatchCodes_FullMethodName, codes.OK},
		} {
			if got := before.value("grpc_server_handled_total", rpc(w.method, w.code)...); got < 1 {
				t.Errorf("%s: grpc_server_handled_total for %s %v is %v, want >= 1", w.what, w.method, w.code, got)
			}
		}
		if f := after.fam["grpc_server_handling_seconds"]; f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
			t.Errorf("grpc_server_handling_seconds is missing or not a histogram")
		}
		if got := after.value("go_sql_max_open_connections", "db_name", "enroll"); got < 1 {
			t.Errorf("database pool size: go_sql_max_open_connections = %v, want >= 1", got)
		}
		if got := after.value("go_sql_open_connections", "db_name", "enroll"); got < 1 {
			t.Errorf("database pool: go_sql_open_connections = %v, want >= 1 after serving calls", got)
		}

		// Issuance: the counter matches what the batches hold, and finished batches leave no
		// progress series behind.
		resp, err := h.admin.ListBatches(h.adminCtx(t), &enrollv1.ListBatchesRequest{Incident: "incidents/secret-breach"})
		if err != nil {
			t.Fatal(err)
		}
		var issued int64
		for _, b := range resp.GetBatches() {
			issued += b.GetIssued()
		}
		if issued == 0 {
			t.Fatal("the flow issued no codes")
		}
		if got := after.value("enroll_issuance_codes_issued_total"); got != float64(issued) {
			t.Errorf("enroll_issuance_codes_issued_total = %v, want %d (the batches' issued counts)", got, issued)
		}
		if got := after.value("enroll_batch_codes_issued"); got != -1 {
			t.Errorf("a finished batch still has a progress series (%v)", got)
		}

		for _, code := range unknown {
			compact := strings.ReplaceAll(code, "-", "")
			secrets = append(secrets, secret{"unknown code", code}, secret{"compact unknown code", compact},
				secret{"lower-case unknown code", strings.ToLower(compact)})
		}
		for _, s := range secrets {
			if strings.Contains(after.raw, s.value) {
				t.Errorf("%s appears in /metrics", s.name)
			}
		}
		if strings.Contains(after.raw, h.adminID+`"`) || strings.Contains(after.raw, "127.0.0.1") {
			t.Errorf("/metrics names a client or an address")
		}
	})
}

// With --metrics-addr, /metrics is served there and not on the REST listener.
func TestE2EMetricsOwnListener(t *testing.T) {
	t.Parallel()
	h := start(t, gormtest.Engines(t)[0], t0, func(c *config.Config) { c.MetricsAddr = "127.0.0.1:0" })
	addr := h.app.MetricsAddr().String()
	if addr == h.app.HTTPAddr().String() {
		t.Fatalf("metrics share the REST listener %s", addr)
	}
	s := scrapeMetrics(t, h.httpc, "http://"+addr+"/metrics")
	if got := s.value("grpc_server_handled_total", rpc(enrollv1.AuthService_Token_FullMethodName, codes.OK)...); got != 0 {
		t.Errorf("Token OK should be initialised to 0 before any call, got %v", got)
	}
	if got := s.value("enroll_limit_rejections_total", "limit", limits.LimitPartnerCalls); got != 0 {
		t.Errorf("partner_calls refusals should be initialised to 0, got %v", got)
	}
	r := h.do(t, "GET", "/metrics", "", nil)
	if r.status != http.StatusNotFound {
		t.Errorf("/metrics on the REST listener: HTTP %d, want 404 when --metrics-addr is set", r.status)
	}
}
