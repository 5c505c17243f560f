package server_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// badCheckSymbol returns code with its check symbol replaced by another valid symbol: every
// character is legal, only the check fails, as with a typo.
func badCheckSymbol(t testing.TB, code string) string {
	t.Helper()
	last := code[len(code)-1]
	i := strings.IndexByte(enrollcodes.Alphabet, last)
	bad := code[:len(code)-1] + string(enrollcodes.Alphabet[(i+1)%len(enrollcodes.Alphabet)])
	if _, err := enrollcodes.Parse(bad); err == nil {
		t.Fatalf("%s still parses", bad)
	}
	return bad
}

// unknownCode is a well-formed code that was never issued.
func unknownCode(t testing.TB) string {
	t.Helper()
	c, err := enrollcodes.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return c.String()
}

// Errors map to canonical gRPC codes and, through the gateway, to HTTP statuses, with a
// message that says what to fix.
func TestE2EErrorMapping(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		s := seed(t, h, "err-breach", "err-monitor")
		s.redeemRef(t, h, "APP-0001")
		admin, partner := h.adminToken(t), s.partnerToken(t, h)
		malformed, unknown, redeemed := badCheckSymbol(t, s.codes["APP-0002"]), unknownCode(t), s.codes["APP-0001"]

		t.Run("http", func(t *testing.T) {
			for _, path := range []string{"/v1/redemption:check", "/v1/redemption:redeem", "/v1/redemption:status"} {
				h.do(t, "POST", path, "", map[string]any{"code": malformed}).wantError(t, "malformed code at "+path, http.StatusBadRequest, "check the code")
				h.do(t, "POST", path, "", map[string]any{"code": unknown}).wantError(t, "unknown code at "+path, http.StatusNotFound, "no such code")
			}
			h.do(t, "POST", "/v1/partner/codes:verify", partner, map[string]any{"code": malformed}).
				wantError(t, "VerifyCode malformed", http.StatusBadRequest, "check the code")
			h.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": redeemed}).
				wantError(t, "redeem twice", http.StatusConflict, "already been redeemed")
			h.do(t, "GET", "/v1/incidents", "", nil).wantError(t, "no token", http.StatusUnauthorized, "bearer token")
			h.do(t, "GET", "/v1/incidents", "", nil, "Authorization", "Basic YWRtaW46eA==").
				wantError(t, "basic auth", http.StatusUnauthorized, "Bearer")
			h.do(t, "GET", "/v1/incidents", partner, nil).wantError(t, "partner on admin", http.StatusForbidden, "PARTNER", "ListIncidents")
			h.do(t, "GET", "/v1/enrollments", admin, nil).wantError(t, "admin on partner", http.StatusForbidden, "ADMIN", "ListEnrollments")
			h.do(t, "GET", "/v1/incidents?page_token=not-a-token!", admin, nil).wantError(t, "bad page_token", http.StatusBadRequest, "page_token")
			h.do(t, "GET", "/v1/enrollments?page_token=e30", partner, nil).wantError(t, "empty page_token", http.StatusBadRequest, "page_token")
			h.do(t, "GET", "/v1/incidents/no-such-incident", admin, nil).wantError(t, "unknown incident", http.StatusNotFound, "no-such-incident", "not found")
			h.do(t, "GET", "/v1/incidents/no-such-incident/counts", admin, nil).wantError(t, "counts of unknown incident", http.StatusNotFound, "no-such-incident")
			h.do(t, "POST", "/v1/incidents?incident_id=err-breach", admin, map[string]any{"title": "again", "partner": s.partner}).
				wantError(t, "duplicate incident", http.StatusConflict, "err-breach", "already exists")
			h.do(t, "POST", "/v1/incidents?incident_id=Bad_Id", admin, map[string]any{"title": "x", "partner": s.partner}).
				wantError(t, "invalid incident id", http.StatusBadRequest, "incident_id")
			h.do(t, "POST", "/v1/token", "", map[string]any{"grant_type": "client_credentials", "client_id": s.partnerClient, "client_secret": "wrong"}).
				wantError(t, "wrong secret", http.StatusUnauthorized, "invalid client credentials")
		})

		t.Run("grpc", func(t *testing.T) {
			bg := context.Background()
			actx, pctx := bearer(admin), bearer(partner)
			_, err := h.redeem.CheckCode(bg, &enrollv1.CheckCodeRequest{Code: malformed})
			wantCode(t, "CheckCode malformed", err, codes.InvalidArgument, "check the code")
			_, err = h.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: malformed})
			wantCode(t, "RedeemCode malformed", err, codes.InvalidArgument, "check the code")
			_, err = h.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: "1234"})
			wantCode(t, "RedeemCode short", err, codes.InvalidArgument, "check the code", "16")
			_, err = h.redeem.CheckCode(bg, &enrollv1.CheckCodeRequest{Code: unknown})
			wantCode(t, "CheckCode unknown", err, codes.NotFound, "no such code")
			_, err = h.partner.VerifyCode(pctx, &enrollv1.VerifyCodeRequest{Code: unknown})
			wantCode(t, "VerifyCode unknown", err, codes.NotFound, "no such code")
			_, err = h.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: redeemed})
			wantCode(t, "redeem twice", err, codes.AlreadyExists, "already been redeemed")
			_, err = h.admin.ListIncidents(bg, &enrollv1.ListIncidentsRequest{})
			wantCode(t, "no token", err, codes.Unauthenticated, "bearer token")
			_, err = h.admin.ListIncidents(pctx, &enrollv1.ListIncidentsRequest{})
			wantCode(t, "partner on admin", err, codes.PermissionDenied, "PARTNER")
			_, err = h.partner.ListEnrollments(actx, &enrollv1.ListEnrollmentsRequest{})
			wantCode(t, "admin on partner", err, codes.PermissionDenied, "ADMIN")
			_, err = h.reporting.GetCounts(pctx, &enrollv1.GetCountsRequest{Incident: s.incident})
			wantCode(t, "partner on finance", err, codes.PermissionDenied, "PARTNER")
			_, err = h.admin.ListIncidents(actx, &enrollv1.ListIncidentsRequest{PageToken: "not-a-token!"})
			wantCode(t, "bad page_token", err, codes.InvalidArgument, "page_token")
			_, err = h.admin.ListCohorts(actx, &enrollv1.ListCohortsRequest{Parent: s.incident, PageSize: -1})
			wantCode(t, "negative page_size", err, codes.InvalidArgument, "page_size")
			_, err = h.admin.GetIncident(actx, &enrollv1.GetIncidentRequest{Name: "incidents/no-such-incident"})
			wantCode(t, "unknown incident", err, codes.NotFound, "no-such-incident")
			_, err = h.admin.GetIncident(actx, &enrollv1.GetIncidentRequest{Name: "no-such-incident"})
			wantCode(t, "malformed name", err, codes.InvalidArgument, "incidents/{id}")
			_, err = h.admin.CreateIncident(actx, &enrollv1.CreateIncidentRequest{IncidentId: "err-breach", Incident: &enrollv1.Incident{Title: "again", Partner: s.partner}})
			wantCode(t, "duplicate incident", err, codes.AlreadyExists, "err-breach")
			_, err = h.admin.CreatePartner(actx, &enrollv1.CreatePartnerRequest{PartnerId: "err-monitor", Partner: &enrollv1.Partner{DisplayName: "x", EnrollmentUri: "https://x.example"}})
			wantCode(t, "duplicate partner", err, codes.AlreadyExists, "err-monitor")
			_, err = h.admin.GetBatch(actx, &enrollv1.GetBatchRequest{Name: "batches/nope"})
			wantCode(t, "unknown batch", err, codes.NotFound, "batch")
			_, err = h.partner.GetEnrollment(pctx, &enrollv1.GetEnrollmentRequest{Name: "enrollments/nope"})
			wantCode(t, "unknown enrollment", err, codes.NotFound, "enrollment")
			_, err = h.authc.Token(bg, &enrollv1.TokenRequest{GrantType: "password", ClientId: "x", ClientSecret: "y"})
			wantCode(t, "wrong grant type", err, codes.InvalidArgument, "client_credentials")
			_, err = h.authc.Token(bg, &enrollv1.TokenRequest{GrantType: "client_credentials", ClientId: "nobody", ClientSecret: "y"})
			wantCode(t, "unknown client", err, codes.Unauthenticated, "invalid client credentials")
		})
	})
}
