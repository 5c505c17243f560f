// Package web is the page affected people use to redeem their code: plain HTML, CSS and a
// little JavaScript, embedded in the binary and served by the REST gateway at / and /assets/.
// It calls only the public redemption API on the same origin and loads nothing from anywhere
// else, which its Content-Security-Policy enforces.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// ContentSecurityPolicy is the page's policy: scripts, styles and images from this origin
// only (no inline script or style, so an injected string cannot run), API calls to this
// origin only, no framing, no forms posting elsewhere, and DOM sinks locked by Trusted Types
// because the script never needs innerHTML.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'"

// Static returns the embedded files: index.html and assets/.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		// The embed pattern above guarantees the directory; this cannot happen at run time.
		panic(err)
	}
	return sub
}

// Register serves the page on mux: GET / (exactly) and GET /assets/... Everything else stays
// with whatever mux already routes (the API, /openapi.json, /healthz).
func Register(mux *http.ServeMux) {
	static := Static()
	assets := http.FileServerFS(static)
	mux.Handle("GET /{$}", withPolicy(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})))
	mux.Handle("GET /assets/", withPolicy(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No directory listings: the assets are known files.
		if r.URL.Path == "/assets/" {
			http.NotFound(w, r)
			return
		}
		assets.ServeHTTP(w, r)
	})))
}

// withPolicy sets the page's headers. The gateway's own security headers (nosniff, no-store,
// no framing, no referrer) are set around it.
func withPolicy(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		next.ServeHTTP(w, r)
	})
}
