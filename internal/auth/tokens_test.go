package auth

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIssueVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Principal
	}{
		{name: "admin", p: Principal{ClientID: "cli_admin", Role: RoleAdmin}},
		{name: "finance", p: Principal{ClientID: "cli_fin", Role: RoleFinance}},
		{name: "partner", p: Principal{ClientID: "cli_partner", Role: RolePartner, PartnerID: "acme"}},
		{name: "caller token id is ignored", p: Principal{ClientID: "cli_admin", Role: RoleAdmin, TokenID: "forged"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newEnv(t, mustKey(t, "active"), mustKey(t, "old"))
			tok, exp, err := env.tokens.Issue(tt.p)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if want := t0.Add(testTTL); !exp.Equal(want) {
				t.Errorf("expires = %v, want %v (from the injected clock)", exp, want)
			}
			hdr := decodeSegment(t, tok, 0)
			if hdr["alg"] != "EdDSA" || hdr["kid"] != "active" {
				t.Errorf("header = %v, want alg EdDSA and kid of the active key", hdr)
			}
			claims := decodeSegment(t, tok, 1)
			if claims["iat"] != float64(t0.Unix()) || claims["exp"] != float64(exp.Unix()) {
				t.Errorf("iat/exp = %v/%v, want %d/%d", claims["iat"], claims["exp"], t0.Unix(), exp.Unix())
			}
			got, err := env.tokens.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := tt.p
			want.TokenID = got.TokenID
			if got != want {
				t.Errorf("Verify = %+v, want %+v", got, want)
			}
			if got.TokenID == "" || got.TokenID == "forged" || got.TokenID != claims["jti"] {
				t.Errorf("TokenID = %q, want the random jti %v", got.TokenID, claims["jti"])
			}
			tok2 := env.issue(t, tt.p)
			p2, err := env.tokens.Verify(tok2)
			if err != nil || p2.TokenID == got.TokenID {
				t.Errorf("second token: jti %q (err %v), want a fresh jti", p2.TokenID, err)
			}
		})
	}
}

func TestIssueRejectsInvalidPrincipal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Principal
	}{
		{name: "partner without partner id", p: Principal{ClientID: "c", Role: RolePartner}},
		{name: "finance with partner id", p: Principal{ClientID: "c", Role: RoleFinance, PartnerID: "acme"}},
		{name: "no client id", p: Principal{Role: RoleAdmin}},
		{name: "unknown role", p: Principal{ClientID: "c", Role: "ROOT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newEnv(t)
			if tok, _, err := env.tokens.Issue(tt.p); err == nil {
				t.Errorf("Issue succeeded with %q", tok)
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		token   func(t *testing.T, e *testEnv) string
		advance time.Duration
	}{
		// The control case: proves craft() makes valid tokens, so the
		// rejections below fail for the reason they name.
		{name: "hand-crafted valid token", token: func(t *testing.T, e *testEnv) string {
			return craft(t, edHeader("k1"), e.validClaims(), edSigner(e.keys[0].Private))
		}},
		{name: "aud as single string", token: func(t *testing.T, e *testEnv) string {
			c := e.validClaims()
			c["aud"] = testAudience
			return craft(t, edHeader("k1"), c, edSigner(e.keys[0].Private))
		}},
		{name: "aud list containing ours", token: func(t *testing.T, e *testEnv) string {
			c := e.validClaims()
			c["aud"] = []string{"other-api", testAudience}
			return craft(t, edHeader("k1"), c, edSigner(e.keys[0].Private))
		}},
		{name: "expired but within leeway", advance: testTTL + Leeway - time.Second, token: func(t *testing.T, e *testEnv) string {
			return e.issue(t, Principal{ClientID: "c", Role: RoleAdmin})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newEnv(t)
			tok := tt.token(t, env)
			env.clock.Advance(tt.advance)
			if _, err := env.tokens.Verify(tok); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	// with returns a token builder that signs validClaims modified by edit
	// with the env's real key, so only the edited field is wrong.
	with := func(edit func(c map[string]any)) func(t *testing.T, e *testEnv) string {
		return func(t *testing.T, e *testEnv) string {
			c := e.validClaims()
			edit(c)
			return craft(t, edHeader("k1"), c, edSigner(e.keys[0].Private))
		}
	}
	tests := []struct {
		name    string
		token   func(t *testing.T, e *testEnv) string
		advance time.Duration
		want    string
	}{
		{name: "alg none", want: "signing algorithm not allowed", token: func(t *testing.T, e *testEnv) string {
			return craft(t, map[string]any{"alg": "none", "typ": "JWT", "kid": "k1"}, e.validClaims(), nil)
		}},
		{name: "HS256 keyed with the Ed25519 public key", want: "signing algorithm not allowed", token: func(t *testing.T, e *testEnv) string {
			return craft(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": "k1"}, e.validClaims(), func(in string) []byte {
				m := hmac.New(sha256.New, e.keys[0].Public())
				m.Write([]byte(in))
				return m.Sum(nil)
			})
		}},
		{name: "wrong audience", want: "wrong audience", token: with(func(c map[string]any) { c["aud"] = []string{"billing-api"} })},
		{name: "missing audience", want: "missing aud claim", token: with(func(c map[string]any) { delete(c, "aud") })},
		{name: "wrong issuer", want: "wrong issuer", token: with(func(c map[string]any) { c["iss"] = "https://evil.test" })},
		{name: "missing issuer", want: "missing iss claim", token: with(func(c map[string]any) { delete(c, "iss") })},
		{name: "expired", want: "token expired", advance: testTTL + Leeway + time.Second, token: func(t *testing.T, e *testEnv) string {
			return e.issue(t, Principal{ClientID: "c", Role: RoleAdmin})
		}},
		{name: "expired and wrong audience", want: "token expired, wrong audience", token: with(func(c map[string]any) {
			c["exp"] = t0.Add(-time.Hour).Unix()
			c["aud"] = "billing-api"
		})},
		{name: "missing exp", want: "missing exp claim", token: with(func(c map[string]any) { delete(c, "exp") })},
		{name: "issued in the future", want: "issued in the future", token: with(func(c map[string]any) {
			c["iat"] = t0.Add(10 * time.Minute).Unix()
		})},
		{name: "not valid yet", want: "not valid yet", token: with(func(c map[string]any) { c["nbf"] = t0.Add(10 * time.Minute).Unix() })},
		{name: "unknown kid", want: "unknown signing key", token: func(t *testing.T, e *testEnv) string {
			return craft(t, edHeader("k9"), e.validClaims(), edSigner(e.keys[0].Private))
		}},
		{name: "missing kid", want: "missing key id", token: func(t *testing.T, e *testEnv) string {
			return craft(t, map[string]any{"alg": "EdDSA", "typ": "JWT"}, e.validClaims(), edSigner(e.keys[0].Private))
		}},
		{name: "kid not a string", want: "missing key id", token: func(t *testing.T, e *testEnv) string {
			return craft(t, map[string]any{"alg": "EdDSA", "kid": 1}, e.validClaims(), edSigner(e.keys[0].Private))
		}},
		{name: "unknown key under known kid", want: "invalid signature", token: func(t *testing.T, e *testEnv) string {
			return craft(t, edHeader("k1"), e.validClaims(), edSigner(mustKey(t, "k1").Private))
		}},
		{name: "tampered payload", want: "invalid signature", token: func(t *testing.T, e *testEnv) string {
			tok := e.issue(t, Principal{ClientID: "c", Role: RolePartner, PartnerID: "acme"})
			c := decodeSegment(t, tok, 1)
			c["role"], c["partner"] = "ADMIN", nil
			parts := strings.Split(tok, ".")
			return parts[0] + "." + b64JSON(t, c) + "." + parts[2]
		}},
		{name: "signature stripped", want: "invalid signature", token: func(t *testing.T, e *testEnv) string {
			tok := e.issue(t, Principal{ClientID: "c", Role: RoleAdmin})
			return tok[:strings.LastIndex(tok, ".")+1]
		}},
		{name: "partner role without partner", want: "requires a partner claim", token: with(func(c map[string]any) { c["role"] = "PARTNER" })},
		{name: "admin role with partner", want: "only allowed for role PARTNER", token: with(func(c map[string]any) { c["partner"] = "acme" })},
		{name: "unknown role", want: "unknown role", token: with(func(c map[string]any) { c["role"] = "admin" })},
		{name: "missing role", want: "unknown role", token: with(func(c map[string]any) { delete(c, "role") })},
		{name: "missing sub", want: "missing sub", token: with(func(c map[string]any) { delete(c, "sub") })},
		{name: "missing jti", want: "missing jti", token: with(func(c map[string]any) { delete(c, "jti") })},
		{name: "exp of wrong type", want: "malformed token", token: with(func(c map[string]any) { c["exp"] = "tomorrow" })},
		{name: "garbage", want: "malformed token", token: func(*testing.T, *testEnv) string { return "not-a-jwt" }},
		{name: "empty", want: "empty token", token: func(*testing.T, *testEnv) string { return "" }},
		{name: "oversized", want: "token too large", token: func(*testing.T, *testEnv) string { return strings.Repeat("a", maxTokenLen+1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newEnv(t)
			tok := tt.token(t, env)
			env.clock.Advance(tt.advance)
			p, err := env.tokens.Verify(tok)
			if err == nil {
				t.Fatalf("Verify accepted the token as %+v", p)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if p != (Principal{}) {
				t.Errorf("rejected token still produced principal %+v", p)
			}
			for _, seg := range strings.Split(tok, ".") {
				if len(seg) > 8 && strings.Contains(err.Error(), seg) {
					t.Errorf("error %q echoes the token", err)
				}
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := mustKey(t, "2030-old"), mustKey(t, "2031-new")
	before := newEnv(t, oldKey)
	oldTok := before.issue(t, Principal{ClientID: "c", Role: RoleFinance})

	rotated := newEnv(t, newKey, oldKey)
	if _, err := rotated.tokens.Verify(oldTok); err != nil {
		t.Errorf("token signed by the previous key no longer verifies: %v", err)
	}
	newTok := rotated.issue(t, Principal{ClientID: "c", Role: RoleFinance})
	if kid := decodeSegment(t, newTok, 0)["kid"]; kid != newKey.ID {
		t.Errorf("rotated tokens signed with kid %v, want %s", kid, newKey.ID)
	}
	if _, err := before.tokens.Verify(newTok); err == nil || !strings.Contains(err.Error(), "unknown signing key") {
		t.Errorf("replica without the new key: Verify error = %v, want unknown signing key", err)
	}
	var kids []string
	for _, k := range rotated.tokens.JWKS().Keys {
		kids = append(kids, k.Kid)
	}
	if strings.Join(kids, ",") != "2031-new,2030-old" {
		t.Errorf("JWKS kids = %v, want active then old", kids)
	}

	retired := newEnv(t, newKey)
	if _, err := retired.tokens.Verify(oldTok); err == nil || !strings.Contains(err.Error(), "unknown signing key") {
		t.Errorf("after retiring the old key: Verify error = %v, want unknown signing key", err)
	}
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	keys := []SigningKey{mustKey(t, "a"), mustKey(t, "b")}
	env := newEnv(t, keys...)
	raw, err := json.Marshal(env.tokens.JWKS())
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("unmarshal %s: %v", raw, err)
	}
	if len(doc.Keys) != len(keys) {
		t.Fatalf("JWKS has %d keys, want %d: %s", len(doc.Keys), len(keys), raw)
	}
	for i, k := range keys {
		got := doc.Keys[i]
		for field, want := range map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": k.ID, "use": "sig", "alg": "EdDSA"} {
			if got[field] != want {
				t.Errorf("key %d %s = %q, want %q", i, field, got[field], want)
			}
		}
		x, err := base64.RawURLEncoding.DecodeString(got["x"])
		if err != nil || !ed25519.PublicKey(x).Equal(k.Public()) {
			t.Errorf("key %d x = %q does not decode to the public key (err %v)", i, got["x"], err)
		}
		if len(got) != 6 {
			t.Errorf("key %d has fields %v; a JWKS must publish only public members", i, got)
		}
	}
	jwks := env.tokens.JWKS()
	jwks.Keys[0].Kid = "mutated"
	if env.tokens.JWKS().Keys[0].Kid != "a" {
		t.Error("mutating a returned JWKS changed the Tokens' copy")
	}
}

func TestNewTokensValidation(t *testing.T) {
	t.Parallel()
	k1, k2 := mustKey(t, "k1"), mustKey(t, "k2")
	mismatched := SigningKey{ID: "mm", Private: append(ed25519.PrivateKey{}, k1.Private...)}
	copy(mismatched.Private[32:], k2.Public())
	valid := func() TokenConfig {
		return TokenConfig{Issuer: testIssuer, Audience: testAudience, TTL: testTTL, Keys: []SigningKey{k1, k2}}
	}
	tests := []struct {
		name    string
		edit    func(c *TokenConfig)
		wantErr string
	}{
		{name: "valid with nil clock", edit: func(*TokenConfig) {}},
		{name: "TTL at the cap", edit: func(c *TokenConfig) { c.TTL = MaxTokenTTL }},
		{name: "empty issuer", edit: func(c *TokenConfig) { c.Issuer = "" }, wantErr: "issuer"},
		{name: "empty audience", edit: func(c *TokenConfig) { c.Audience = "" }, wantErr: "audience"},
		{name: "zero TTL", edit: func(c *TokenConfig) { c.TTL = 0 }, wantErr: "TTL"},
		{name: "negative TTL", edit: func(c *TokenConfig) { c.TTL = -time.Minute }, wantErr: "TTL"},
		{name: "TTL above cap", edit: func(c *TokenConfig) { c.TTL = MaxTokenTTL + time.Second }, wantErr: "TTL"},
		{name: "no keys", edit: func(c *TokenConfig) { c.Keys = nil }, wantErr: "no signing keys"},
		{name: "duplicate kid", edit: func(c *TokenConfig) { c.Keys = []SigningKey{k1, {ID: "k1", Private: k2.Private}} }, wantErr: "duplicate key id"},
		{name: "bad kid", edit: func(c *TokenConfig) { c.Keys = []SigningKey{{ID: "a,b", Private: k1.Private}} }, wantErr: "may only contain"},
		{name: "truncated key", edit: func(c *TokenConfig) { c.Keys = []SigningKey{{ID: "k", Private: k1.Private[:32]}} }, wantErr: "64 bytes"},
		{name: "public half mismatch", edit: func(c *TokenConfig) { c.Keys = []SigningKey{mismatched} }, wantErr: "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid()
			tt.edit(&cfg)
			tk, err := NewTokens(cfg)
			if tt.wantErr == "" {
				if err != nil || tk == nil {
					t.Fatalf("NewTokens: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewTokens error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}
