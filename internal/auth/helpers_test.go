package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/clock"
)

const (
	testIssuer   = "https://auth.enroll.test"
	testAudience = "enroll-api"
	testTTL      = 15 * time.Minute
)

// t0 is the fake clock's start; far from the real date so that any use of
// the wall clock instead of the injected one makes tests fail.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

func mustKey(t *testing.T, id string) SigningKey {
	t.Helper()
	k, err := GenerateSigningKey(id)
	if err != nil {
		t.Fatalf("GenerateSigningKey(%q): %v", id, err)
	}
	return k
}

// testEnv is one isolated Tokens with its own fake clock, so parallel
// subtests can move time independently.
type testEnv struct {
	tokens *Tokens
	clock  *clock.Fake
	keys   []SigningKey
}

func newEnv(t *testing.T, keys ...SigningKey) *testEnv {
	t.Helper()
	if len(keys) == 0 {
		keys = []SigningKey{mustKey(t, "k1")}
	}
	clk := clock.NewFake(t0)
	tk, err := NewTokens(TokenConfig{Issuer: testIssuer, Audience: testAudience, TTL: testTTL, Keys: keys, Clock: clk})
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	return &testEnv{tokens: tk, clock: clk, keys: keys}
}

func (e *testEnv) issue(t *testing.T, p Principal) string {
	t.Helper()
	tok, _, err := e.tokens.Issue(p)
	if err != nil {
		t.Fatalf("Issue(%+v): %v", p, err)
	}
	return tok
}

// validClaims returns a claim set Verify accepts, for tests to break one
// field at a time.
func (e *testEnv) validClaims() map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"iss":  testIssuer,
		"aud":  []string{testAudience},
		"sub":  "cli_test",
		"iat":  now.Unix(),
		"exp":  now.Add(testTTL).Unix(),
		"jti":  "jti-1",
		"role": "ADMIN",
	}
}

func edHeader(kid string) map[string]any {
	return map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": kid}
}

// craft builds a compact JWS by hand, bypassing the library, so tests can
// produce tokens the library itself would refuse to create.
func craft(t *testing.T, header, claims map[string]any, sign func(signingInput string) []byte) string {
	t.Helper()
	input := b64JSON(t, header) + "." + b64JSON(t, claims)
	var sig []byte
	if sign != nil {
		sig = sign(input)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func edSigner(k ed25519.PrivateKey) func(string) []byte {
	return func(input string) []byte { return ed25519.Sign(k, []byte(input)) }
}

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeSegment decodes one JSON segment (0 header, 1 claims) of a token.
func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("decode segment %d: %v", i, err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshal segment %d: %v", i, err)
	}
	return m
}
