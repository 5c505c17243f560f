package server_test

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// The whole flow as a plain HTTP/JSON client sees it: snake_case proto field names, paths
// from the google.api.http options, Authorization: Bearer.
func TestE2EFlowHTTP(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		admin := httpToken(t, h, h.adminID, h.adminSecret)
		const inc = "incidents/web-breach"

		p := h.do(t, "POST", "/v1/partners?partner_id=web-monitor", admin, map[string]any{
			"display_name": "Web Monitor", "enrollment_uri": "https://web-monitor.example/enroll",
		}).ok(t, "CreatePartner")
		if str(p, "partner", "name") != "partners/web-monitor" || str(p, "partner", "enrollment_uri") != "https://web-monitor.example/enroll" {
			t.Fatalf("CreatePartner: %v", p)
		}
		pc := h.do(t, "POST", "/v1/clients", admin, map[string]any{
			"role": "ROLE_PARTNER", "partner": "partners/web-monitor", "display_name": "web integration",
		}).ok(t, "CreateClient")
		partnerID, partnerSecret := strings.TrimPrefix(str(pc, "client", "name"), "clients/"), str(pc, "client_secret")
		if partnerID == "" || partnerSecret == "" || str(pc, "client", "role") != "ROLE_PARTNER" {
			t.Fatalf("CreateClient: %v", pc)
		}
		in := h.do(t, "POST", "/v1/incidents?incident_id=web-breach", admin, map[string]any{
			"title": "Web breach", "partner": "partners/web-monitor",
		}).ok(t, "CreateIncident")
		if str(in, "incident", "name") != inc || get(in, "incident", "offer", "coverage_months") != float64(24) ||
			str(in, "incident", "create_time") != "2026-01-31T10:00:00Z" {
			t.Fatalf("CreateIncident: %v", in)
		}
		for _, c := range fixtureCohorts() {
			raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(c.c)
			if err != nil {
				t.Fatal(err)
			}
			got := h.do(t, "POST", "/v1/"+inc+"/cohorts?cohort_id="+c.id, admin, string(raw)).ok(t, "CreateCohort")
			if str(got, "cohort", "name") != inc+"/cohorts/"+c.id {
				t.Fatalf("CreateCohort: %v", got)
			}
		}
		var rows []json.RawMessage
		for i, r := range fixtureSubjects() {
			r.Line = int64(firstLine + i)
			raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, raw)
		}
		// A client stream through the gateway: newline-delimited messages; one is enough here.
		imp := h.do(t, "POST", "/v1/subjects:import", admin, map[string]any{"parent": inc, "subjects": rows}).ok(t, "ImportSubjects")
		errs, _ := get(imp, "errors").([]any)
		if str(imp, "created") != "5" || str(imp, "memberships_added") != "1" || len(errs) != 1 || get(errs[0].(map[string]any), "line") != "8" {
			t.Fatalf("ImportSubjects: %v", imp)
		}
		h.do(t, "POST", "/v1/batches:issue", admin, map[string]any{"cohort": inc + "/cohorts/prepaid-customers"}).
			wantError(t, "IssueCodes on a cohort not offered protection", http.StatusBadRequest, "offer_applies")

		codes := map[string]string{}
		for _, cohort := range []string{"credit-applicants", "postpaid-customers"} {
			started := h.do(t, "POST", "/v1/batches:issue", admin, map[string]any{"cohort": inc + "/cohorts/" + cohort}).ok(t, "IssueCodes")
			batches, _ := get(started, "batches").([]any)
			if len(batches) != 1 {
				t.Fatalf("IssueCodes: %v", started)
			}
			name := str(batches[0].(map[string]any), "name")
			var b map[string]any
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				b = h.do(t, "GET", "/v1/"+name, admin, nil).ok(t, "GetBatch")
				if str(b, "batch", "state") != "BATCH_STATE_RUNNING" || time.Now().After(deadline) {
					break
				}
			}
			if str(b, "batch", "state") != "BATCH_STATE_SUCCEEDED" || str(b, "batch", "redeem_by_time") != "2026-07-30T10:00:00Z" {
				t.Fatalf("batch: %v", b)
			}
			if got := h.do(t, "GET", "/v1/"+name, admin, nil).ok(t, "GetBatch"); str(got, "batch", "issued") != str(b, "batch", "total") {
				t.Fatalf("GetBatch: %v", got)
			}
			exp := h.do(t, "GET", "/v1/"+name+":exportCodes", admin, nil)
			if exp.status != http.StatusOK {
				t.Fatalf("ExportBatchCodes: HTTP %d %s", exp.status, exp.body)
			}
			sc := bufio.NewScanner(bytes.NewReader(exp.body))
			for sc.Scan() {
				var line struct {
					Result struct {
						Codes []struct {
							ExternalRef string `json:"external_ref"`
							Code        string `json:"code"`
						} `json:"codes"`
					} `json:"result"`
				}
				if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
					t.Fatalf("export line %q: %v", sc.Text(), err)
				}
				for _, c := range line.Result.Codes {
					codes[c.ExternalRef] = c.Code
				}
			}
		}
		if len(codes) != 4 || codes["APP-0003"] == "" || codes["PP-1003"] != "" {
			t.Fatalf("exported codes: %v; want APP-0001..3 and PP-1001", codes)
		}

		chk := h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": typed(codes["APP-0003"])}).ok(t, "CheckCode")
		cohorts, _ := get(chk, "cohorts").([]any)
		if str(chk, "state") != "CODE_STATE_ISSUED" || str(chk, "incident_title") != "Web breach" ||
			str(chk, "partner_display_name") != "Web Monitor" || len(cohorts) != 2 {
			t.Fatalf("CheckCode: %v", chk)
		}
		red := h.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": codes["APP-0001"]}).ok(t, "RedeemCode")
		en1 := str(red, "enrollment", "name")
		if str(red, "enrollment", "state") != "ENROLLMENT_STATE_PENDING" || !strings.Contains(str(red, "next_step_uri"), url.QueryEscape(en1)) ||
			str(red, "enrollment", "activation_deadline_time") != "2026-03-02T10:00:00Z" {
			t.Fatalf("RedeemCode: %v", red)
		}
		en2 := str(h.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": codes["PP-1001"]}).ok(t, "RedeemCode"), "enrollment", "name")

		partner := httpToken(t, h, partnerID, partnerSecret)
		ver := h.do(t, "POST", "/v1/partner/codes:verify", partner, map[string]any{"code": codes["APP-0001"]}).ok(t, "VerifyCode")
		if str(ver, "state") != "CODE_STATE_REDEEMED" || str(ver, "enrollment") != en1 || str(ver, "incident") != inc {
			t.Fatalf("VerifyCode: %v", ver)
		}
		act := h.do(t, "POST", "/v1/"+en1+":activate", partner, map[string]any{"member_id": "W-1"}).ok(t, "ActivateEnrollment")
		if str(act, "enrollment", "state") != "ENROLLMENT_STATE_ACTIVE" || str(act, "enrollment", "member_id") != "W-1" ||
			str(act, "enrollment", "activate_time") != "2026-01-31T10:00:00Z" || str(act, "enrollment", "coverage_end_time") != "2028-01-31T10:00:00Z" {
			t.Fatalf("ActivateEnrollment: %v", act)
		}
		if got := h.do(t, "GET", "/v1/"+en1, partner, nil).ok(t, "GetEnrollment"); str(got, "enrollment", "member_id") != "W-1" {
			t.Fatalf("GetEnrollment: %v", got)
		}
		var listed []string
		for token, pages := "", 0; ; pages++ {
			if pages > 4 {
				t.Fatalf("ListEnrollments does not terminate: %v", listed)
			}
			page := h.do(t, "GET", "/v1/enrollments?page_size=1&page_token="+url.QueryEscape(token), partner, nil).ok(t, "ListEnrollments")
			ens, _ := get(page, "enrollments").([]any)
			for _, e := range ens {
				listed = append(listed, str(e.(map[string]any), "name"))
			}
			if token = str(page, "next_page_token"); token == "" {
				break
			}
		}
		wantListed := []string{en1, en2}
		slices.Sort(wantListed)
		if !slices.Equal(listed, wantListed) {
			t.Fatalf("ListEnrollments: %v, want %v", listed, wantListed)
		}
		st := h.do(t, "POST", "/v1/redemption:status", "", map[string]any{"code": typed(codes["APP-0001"])}).ok(t, "GetEnrollmentStatus")
		if str(st, "code_state") != "CODE_STATE_REDEEMED" || str(st, "enrollment", "state") != "ENROLLMENT_STATE_ACTIVE" || get(st, "enrollment", "member_id") != nil {
			t.Fatalf("GetEnrollmentStatus: %v", st)
		}

		fc := h.do(t, "POST", "/v1/clients", admin, map[string]any{"role": "ROLE_FINANCE"}).ok(t, "CreateClient finance")
		finance := httpToken(t, h, strings.TrimPrefix(str(fc, "client", "name"), "clients/"), str(fc, "client_secret"))
		httpCounts(t, h, finance, inc, counts{issued: 3, outstanding: 2, redeemed: 1, active: 1}, counts{issued: 1, redeemed: 1, pending: 1})
		can := h.do(t, "POST", "/v1/"+en1+":cancel", partner, map[string]any{"reason": "moved away"}).ok(t, "CancelEnrollment")
		if str(can, "enrollment", "state") != "ENROLLMENT_STATE_CANCELLED" || str(can, "enrollment", "cancel_time") != "2026-01-31T10:00:00Z" {
			t.Fatalf("CancelEnrollment: %v", can)
		}
		httpCounts(t, h, finance, inc, counts{issued: 3, outstanding: 2, redeemed: 1, cancelled: 1}, counts{issued: 1, redeemed: 1, pending: 1})
	})
}

// httpToken exchanges client credentials at POST /v1/token.
func httpToken(t testing.TB, h *harness, id, secret string) string {
	t.Helper()
	r := h.do(t, "POST", "/v1/token", "", map[string]any{"grant_type": "client_credentials", "client_id": id, "client_secret": secret})
	m := r.ok(t, "Token")
	if str(m, "token_type") != "Bearer" || str(m, "expires_in") != "900" || str(m, "access_token") == "" {
		t.Fatalf("Token: %s", r.body)
	}
	return str(m, "access_token")
}

func httpCounts(t testing.TB, h *harness, token, incident string, credit, postpaid counts) {
	t.Helper()
	r := h.do(t, "GET", "/v1/"+incident+"/counts", token, nil)
	r.ok(t, "GetCounts")
	var got enrollv1.GetCountsResponse
	if err := protojson.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("GetCounts body %s: %v", r.body, err)
	}
	if want := expectedCounts(incident, h.clock.Now(), credit, postpaid); !proto.Equal(&got, want) {
		t.Fatalf("GetCounts:\n got %s\nwant %v", r.body, want)
	}
}

// The gateway's own documents: OpenAPI, JWKS and health, with the security headers.
func TestE2EGatewayDocuments(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)

		r := h.do(t, "GET", "/openapi.json", "", nil)
		doc := r.ok(t, "openapi.json")
		if str(doc, "swagger") != "2.0" || get(doc, "paths", "/v1/redemption:redeem") == nil {
			t.Fatalf("openapi.json: swagger %v, want 2.0 and the redemption paths", doc["swagger"])
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("openapi.json Content-Type %q", ct)
		}
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "X-Frame-Options": "DENY"} {
			if got := r.header.Get(k); got != v {
				t.Fatalf("header %s = %q, want %q", k, got, v)
			}
		}

		jwks := h.do(t, "GET", "/.well-known/jwks.json", "", nil).ok(t, "jwks")
		keys, _ := jwks["keys"].([]any)
		if len(keys) != 1 {
			t.Fatalf("jwks: %v, want one key", jwks)
		}
		k := keys[0].(map[string]any)
		x, err := base64.RawURLEncoding.DecodeString(str(k, "x"))
		if str(k, "kty") != "OKP" || str(k, "crv") != "Ed25519" || str(k, "kid") != "k1" || str(k, "alg") != "EdDSA" ||
			err != nil || !ed25519.PublicKey(x).Equal(h.jwtKey.Public()) {
			t.Fatalf("jwks key %v: want OKP/Ed25519/k1 with the signing key's public half", k)
		}

		if hz := h.do(t, "GET", "/healthz", "", nil).ok(t, "healthz"); str(hz, "status") != "SERVING" {
			t.Fatalf("healthz: %v", hz)
		}
	})
}
