package server

import (
	"net/http"
	"strings"
)

// corsPrefix is the part of the API that partner web pages may call from their own origin:
// the public redemption API, which needs no token. Authenticated APIs are server-to-server
// and never answer cross-origin browsers.
const corsPrefix = "/v1/redemption:"

// cors lets the configured origins call the public redemption API from a browser. Credentials
// are never allowed (the API needs none, and cookies must not ride along); an origin not on
// the list gets no CORS headers, so the browser withholds the answer from its page, and its
// preflight is refused outright.
func cors(allowed []string, next http.Handler) http.Handler {
	if len(allowed) == 0 {
		return next
	}
	origins := make(map[string]bool, len(allowed))
	for _, o := range allowed {
		origins[strings.ToLower(o)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || !strings.HasPrefix(r.URL.Path, corsPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		// Caches must key the answer on the origin, allowed or not.
		h.Add("Vary", "Origin")
		ok := origins[strings.ToLower(origin)]
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !ok || r.Header.Get("Access-Control-Request-Method") != http.MethodPost {
				http.Error(w, "cross-origin requests from this origin are not allowed; ask the operator to add it to --cors-allowed-origins", http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", "POST")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Idempotency-Key, X-Request-Id")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if ok {
			h.Set("Access-Control-Allow-Origin", origin)
			// Retry-After is what a page needs to tell a rate-limited person how long to
			// wait; it is not among the headers browsers expose by default.
			h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
		}
		next.ServeHTTP(w, r)
	})
}
