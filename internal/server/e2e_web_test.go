package server_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
	"github.com/idprotect/enroll/web"
)

// inlineHandler matches an inline event handler attribute such as onclick=.
var inlineHandler = regexp.MustCompile(`\son[a-z]+\s*=`)

var sqliteOnly = gormtest.Engine{Name: "sqlite", Config: gormtest.SQLite}

// The page is served at / with its assets, under a CSP without inline script, and does not
// shadow any API route.
func TestWebPageServed(t *testing.T) {
	t.Parallel()
	h := start(t, sqliteOnly, t0)

	page := h.do(t, "GET", "/", "", nil)
	if page.status != http.StatusOK || !strings.Contains(page.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(page.body), `<script src="/assets/app.js" defer></script>`) {
		t.Fatalf("GET /: HTTP %d %s\n%s", page.status, page.header.Get("Content-Type"), page.body)
	}
	csp := page.header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("page CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "*") {
		t.Errorf("page CSP %q allows inline or foreign script", csp)
	}
	if csp != web.ContentSecurityPolicy {
		t.Errorf("page CSP %q, want the one package web declares", csp)
	}
	for k, v := range map[string]string{"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"} {
		if got := page.header.Get(k); got != v {
			t.Errorf("page %s = %q, want %q", k, got, v)
		}
	}
	// Inline script or style would be blocked by the CSP; the page must not rely on any.
	body := string(page.body)
	if strings.Contains(body, "<script>") || strings.Contains(body, "<style") || strings.Contains(body, "style=") || inlineHandler.MatchString(body) {
		t.Error("index.html has inline script or style")
	}
	for _, tc := range []struct{ path, ctype string }{
		{"/assets/app.js", "text/javascript"}, {"/assets/code.js", "text/javascript"},
		{"/assets/style.css", "text/css"}, {"/assets/icon.svg", "image/svg+xml"},
	} {
		r := h.do(t, "GET", tc.path, "", nil)
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), tc.ctype) || len(r.body) == 0 {
			t.Errorf("GET %s: HTTP %d %q", tc.path, r.status, r.header.Get("Content-Type"))
		}
	}
	if r := h.do(t, "GET", "/assets/", "", nil); r.status != http.StatusNotFound {
		t.Errorf("GET /assets/ (a listing): HTTP %d, want 404", r.status)
	}
	if r := h.do(t, "GET", "/assets/nope.js", "", nil); r.status != http.StatusNotFound {
		t.Errorf("GET /assets/nope.js: HTTP %d, want 404", r.status)
	}

	// The API around the page is untouched.
	if r := h.do(t, "GET", "/openapi.json", "", nil); r.status != http.StatusOK || !strings.Contains(string(r.body), "/v1/redemption:check") {
		t.Errorf("GET /openapi.json: HTTP %d", r.status)
	}
	if r := h.do(t, "GET", "/healthz", "", nil); r.status != http.StatusOK {
		t.Errorf("GET /healthz: HTTP %d", r.status)
	}
	if r := h.do(t, "GET", "/.well-known/jwks.json", "", nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"keys"`) {
		t.Errorf("GET /.well-known/jwks.json: HTTP %d %s", r.status, r.body)
	}
	h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": "0000-0000-0000-0010"}).
		wantError(t, "CheckCode with a wrong check symbol", http.StatusBadRequest, "check the code")
	// API answers keep the strict default policy: they are data, never a document.
	if r := h.do(t, "GET", "/healthz", "", nil); r.header.Get("Content-Security-Policy") != "default-src 'none'; frame-ancestors 'none'" {
		t.Errorf("API CSP %q", r.header.Get("Content-Security-Policy"))
	}
	// Only GET serves the page; a form posted without the script reaches the API mux, which
	// has no such route, and never echoes the code into a URL.
	if r := h.do(t, "POST", "/", "", "code=0000-0000-0000-001Y", "Content-Type", "application/x-www-form-urlencoded"); r.status == http.StatusOK {
		t.Errorf("POST / answered 200")
	}
}

const (
	allowedOrigin = "https://partner.example"
	refusedOrigin = "https://evil.example"
)

// Partner pages may call the public redemption API from the allowed origins only, never with
// credentials, and only that API.
func TestCORS(t *testing.T) {
	t.Parallel()
	h := start(t, sqliteOnly, t0, func(c *config.Config) { c.CORSAllowedOrigins = []string{allowedOrigin, "http://localhost:3000"} })

	preflight := func(path, origin, method string) httpResp {
		return h.do(t, "OPTIONS", path, "", nil, "Origin", origin,
			"Access-Control-Request-Method", method, "Access-Control-Request-Headers", "content-type, idempotency-key")
	}
	noCredentials := func(what string, r httpResp) {
		t.Helper()
		if v, ok := r.header["Access-Control-Allow-Credentials"]; ok {
			t.Errorf("%s: Access-Control-Allow-Credentials %v; credentials are never allowed", what, v)
		}
	}

	r := preflight("/v1/redemption:redeem", allowedOrigin, "POST")
	if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != allowedOrigin ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(r.header.Get("Access-Control-Allow-Headers")), "content-type") ||
		!strings.Contains(strings.ToLower(r.header.Get("Access-Control-Allow-Headers")), "idempotency-key") ||
		!strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") {
		t.Fatalf("preflight from the allowed origin: HTTP %d %v", r.status, r.header)
	}
	noCredentials("allowed preflight", r)

	r = preflight("/v1/redemption:redeem", refusedOrigin, "POST")
	if r.status != http.StatusForbidden || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from a refused origin: HTTP %d %v", r.status, r.header)
	}
	noCredentials("refused preflight", r)
	// An allowed origin still cannot use another method.
	if r := preflight("/v1/redemption:check", allowedOrigin, "DELETE"); r.status != http.StatusForbidden || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight for DELETE: HTTP %d %v", r.status, r.header)
	}
	// The origin must match exactly: a look-alike or another scheme is refused.
	for _, o := range []string{"https://partner.example.evil.example", "http://partner.example", "https://partner.example:8443"} {
		if r := preflight("/v1/redemption:check", o, "POST"); r.status != http.StatusForbidden {
			t.Errorf("preflight from %s: HTTP %d, want 403", o, r.status)
		}
	}

	// The actual call: the allowed origin can read the answer (errors included, and the
	// Retry-After a rate-limited page needs), the refused one gets no CORS headers.
	r = h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": "0000-0000-0000-0010"}, "Origin", allowedOrigin)
	r.wantError(t, "CheckCode from the allowed origin", http.StatusBadRequest, "check the code")
	if r.header.Get("Access-Control-Allow-Origin") != allowedOrigin || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("POST from the allowed origin: %v", r.header)
	}
	noCredentials("allowed POST", r)
	r = h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": "0000-0000-0000-0010"}, "Origin", refusedOrigin)
	if r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Expose-Headers") != "" {
		t.Fatalf("POST from a refused origin got CORS headers: %v", r.header)
	}
	noCredentials("refused POST", r)

	// Authenticated APIs are never open to browsers, whatever the origin.
	if r := preflight("/v1/incidents", allowedOrigin, "POST"); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight to /v1/incidents: %v", r.header)
	}
	if r := h.do(t, "POST", "/v1/token", "", map[string]any{"grant_type": "client_credentials"}, "Origin", allowedOrigin); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("POST /v1/token from an allowed origin got CORS headers: %v", r.header)
	}
}

// With no origins configured (the default) nobody gets CORS headers.
func TestCORSDefaultNone(t *testing.T) {
	t.Parallel()
	h := start(t, sqliteOnly, t0)
	if len(h.app.Config.CORSAllowedOrigins) != 0 {
		t.Fatalf("default config allows %v", h.app.Config.CORSAllowedOrigins)
	}
	r := h.do(t, "OPTIONS", "/v1/redemption:check", "", nil, "Origin", allowedOrigin, "Access-Control-Request-Method", "POST")
	if r.header.Get("Access-Control-Allow-Origin") != "" || r.status == http.StatusNoContent {
		t.Fatalf("preflight with no origins configured: HTTP %d %v", r.status, r.header)
	}
	r = h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": "0000-0000-0000-0010"}, "Origin", allowedOrigin)
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("POST with no origins configured: %v", r.header)
	}
}
