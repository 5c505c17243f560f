package server_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// adminClaims are the claims of a genuine admin token at now.
func adminClaims(h *harness, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "enrolld", "aud": []string{"enroll-api"}, "sub": h.adminID, "role": "ADMIN",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "forged-jti-1",
	}
}

func signEdDSA(t testing.TB, key auth.SigningKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key.Private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// algNone is an unsigned token: header alg "none", empty signature.
func algNone(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	seg := func(v any) string {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	return seg(map[string]string{"alg": "none", "typ": "JWT", "kid": "k1"}) + "." + seg(claims) + "."
}

// Forged or stale tokens are refused on an admin endpoint over both transports; a token
// made the same way but correctly is accepted, so each refusal is for its one defect.
func TestE2EJWTRejected(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		now := h.clock.Now()

		hs := jwt.NewWithClaims(jwt.SigningMethodHS256, adminClaims(h, now))
		hs.Header["kid"] = "k1"
		confused, err := hs.SignedString([]byte(h.jwtKey.Public()))
		if err != nil {
			t.Fatal(err)
		}
		wrongAud := adminClaims(h, now)
		wrongAud["aud"] = []string{"some-other-api"}
		wrongIss := adminClaims(h, now)
		wrongIss["iss"] = "someone-else"
		noExp := adminClaims(h, now)
		delete(noExp, "exp")
		stranger, err := auth.GenerateSigningKey("k9")
		if err != nil {
			t.Fatal(err)
		}

		accept := func(name, tok string) {
			t.Helper()
			h.do(t, "GET", "/v1/incidents", tok, nil).ok(t, name+" over HTTP")
			_, err := h.admin.ListIncidents(bearer(tok), &enrollv1.ListIncidentsRequest{})
			wantCode(t, name+" over gRPC", err, codes.OK)
		}
		reject := func(name, tok, why string) {
			t.Helper()
			h.do(t, "GET", "/v1/incidents", tok, nil).wantError(t, name+" over HTTP", http.StatusUnauthorized, why)
			_, err := h.admin.ListIncidents(bearer(tok), &enrollv1.ListIncidentsRequest{})
			wantCode(t, name+" over gRPC", err, codes.Unauthenticated, why)
		}

		accept("forged with the real key (control)", signEdDSA(t, h.jwtKey, "k1", adminClaims(h, now)))
		reject("alg none", algNone(t, adminClaims(h, now)), "algorithm")
		reject("HS256 keyed with the public key", confused, "algorithm")
		reject("wrong audience", signEdDSA(t, h.jwtKey, "k1", wrongAud), "audience")
		reject("wrong issuer", signEdDSA(t, h.jwtKey, "k1", wrongIss), "issuer")
		reject("no exp", signEdDSA(t, h.jwtKey, "k1", noExp), "exp")
		reject("unknown kid, real key", signEdDSA(t, h.jwtKey, "k2", adminClaims(h, now)), "unknown signing key")
		reject("unknown kid, unknown key", signEdDSA(t, stranger, "k9", adminClaims(h, now)), "unknown signing key")
		reject("known kid, unknown key", signEdDSA(t, stranger, "k1", adminClaims(h, now)), "signature")
		reject("garbage", "not.a.jwt", "malformed")

		// A genuine token works until its TTL (15m) plus the 30s leeway has passed.
		genuine := h.adminToken(t)
		accept("genuine token", genuine)
		h.clock.Advance(15*time.Minute + 29*time.Second)
		accept("genuine token within leeway", genuine)
		h.clock.Advance(2 * time.Second)
		reject("expired token", genuine, "expired")
	})
}
