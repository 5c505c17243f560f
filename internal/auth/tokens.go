package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/idprotect/enroll/internal/clock"
)

const (
	// MaxTokenTTL caps token lifetime. Tokens cannot be revoked individually,
	// so a stolen token must stop working soon on its own.
	MaxTokenTTL = time.Hour

	// Leeway is the clock skew tolerated when checking exp, nbf and iat, so
	// that slightly unsynchronised hosts behind a load balancer agree.
	Leeway = 30 * time.Second

	// algEdDSA is the only JWS algorithm accepted. Pinning it defeats
	// "alg: none" and HMAC key-confusion attacks.
	algEdDSA = "EdDSA"

	// maxTokenLen bounds the input to the JWT parser; our tokens are a few
	// hundred bytes, and anything much larger is garbage or an attack.
	maxTokenLen = 8 << 10
)

// ErrInvalidToken is wrapped by every error Verify returns, so callers can
// map all verification failures to one response (Unauthenticated, 401).
var ErrInvalidToken = errors.New("invalid token")

// Reasons reported by the key lookup; they are translated into readable
// messages by rejectReason.
var (
	errMissingKeyID  = errors.New("missing kid")
	errUnknownKeyID  = errors.New("unknown kid")
	errWrongKeyClass = errors.New("not an Ed25519 token")
)

// TokenConfig configures Tokens.
type TokenConfig struct {
	// Issuer is put in and required as the "iss" claim.
	Issuer string
	// Audience is put in the "aud" claim; Verify requires it to be present.
	Audience string
	// TTL is the lifetime of issued tokens, in (0, MaxTokenTTL].
	TTL time.Duration
	// Keys are the signing keys; Keys[0] signs and all of them verify.
	Keys []SigningKey
	// Clock supplies the time for iat/exp and for expiry checks. Nil means
	// clock.Real.
	Clock clock.Clock
}

// Tokens issues and verifies access tokens. It is safe for concurrent use.
type Tokens struct {
	issuer    string
	audience  string
	ttl       time.Duration
	clock     clock.Clock
	signer    SigningKey
	verifiers map[string]ed25519.PublicKey
	parser    *jwt.Parser
	jwks      JWKS
}

// tokenClaims is the JSON payload of an access token.
type tokenClaims struct {
	Role    string `json:"role"`
	Partner string `json:"partner,omitempty"`
	jwt.RegisteredClaims
}

// NewTokens validates cfg and returns a ready Tokens. It rejects an empty
// issuer or audience, a TTL outside (0, MaxTokenTTL], no keys, malformed keys
// and duplicate key ids, because any of those would either weaken
// verification or make rotation ambiguous.
func NewTokens(cfg TokenConfig) (*Tokens, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("token config: issuer is empty")
	}
	if cfg.Audience == "" {
		return nil, errors.New("token config: audience is empty")
	}
	if cfg.TTL <= 0 || cfg.TTL > MaxTokenTTL {
		return nil, fmt.Errorf("token config: TTL %s is outside (0, %s]", cfg.TTL, MaxTokenTTL)
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("token config: no signing keys")
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	t := &Tokens{
		issuer:    cfg.Issuer,
		audience:  cfg.Audience,
		ttl:       cfg.TTL,
		clock:     clk,
		signer:    cfg.Keys[0],
		verifiers: make(map[string]ed25519.PublicKey, len(cfg.Keys)),
	}
	for _, k := range cfg.Keys {
		if err := k.validate(); err != nil {
			return nil, fmt.Errorf("token config: %w", err)
		}
		if _, dup := t.verifiers[k.ID]; dup {
			return nil, fmt.Errorf("token config: duplicate key id %q", k.ID)
		}
		pub := k.Public()
		t.verifiers[k.ID] = pub
		t.jwks.Keys = append(t.jwks.Keys, publicJWK(k.ID, pub))
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{algEdDSA}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(clk.Now),
		jwt.WithStrictDecoding(),
	)
	return t, nil
}

// Issue signs a token for p with the active key. It sets a random jti and
// iat/exp from the clock, ignoring p.TokenID. It returns the token and its
// expiry, which is what the token endpoint reports as expires_in.
func (t *Tokens) Issue(p Principal) (token string, expires time.Time, err error) {
	if err := p.Validate(); err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: %w", err)
	}
	jti, err := randomToken(16)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: %w", err)
	}
	now := t.clock.Now()
	exp := jwt.NewNumericDate(now.Add(t.ttl))
	claims := tokenClaims{
		Role:    string(p.Role),
		Partner: p.PartnerID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   p.ClientID,
			Audience:  jwt.ClaimStrings{t.audience},
			ExpiresAt: exp,
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = t.signer.ID
	signed, err := tok.SignedString(t.signer.Private)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: sign: %w", err)
	}
	return signed, exp.Time, nil
}

// Verify checks token and returns the principal it was issued to. It accepts
// only EdDSA tokens whose kid names a configured key, with the configured
// issuer and audience, an exp that has not passed (allowing Leeway), and
// well-formed sub, jti, role and partner claims.
//
// Every error wraps ErrInvalidToken and says what is wrong without quoting
// the token or any value taken from it, so it can be returned to the client
// and logged.
func (t *Tokens) Verify(token string) (Principal, error) {
	if token == "" {
		return Principal{}, invalid("empty token")
	}
	if len(token) > maxTokenLen {
		return Principal{}, invalid("token too large")
	}
	var c tokenClaims
	parsed, err := t.parser.ParseWithClaims(token, &c, t.verificationKey)
	if err != nil {
		return Principal{}, invalid(rejectReason(err, parsed, &c))
	}
	if c.Subject == "" {
		return Principal{}, invalid("missing sub claim")
	}
	if c.ID == "" {
		return Principal{}, invalid("missing jti claim")
	}
	role, err := ParseRole(c.Role)
	if err != nil {
		return Principal{}, invalid("missing or unknown role claim")
	}
	p := Principal{ClientID: c.Subject, Role: role, PartnerID: c.Partner, TokenID: c.ID}
	if role == RolePartner && p.PartnerID == "" {
		return Principal{}, invalid("role PARTNER requires a partner claim")
	}
	if role != RolePartner && p.PartnerID != "" {
		return Principal{}, invalid("partner claim is only allowed for role PARTNER")
	}
	return p, nil
}

// verificationKey is the jwt.Keyfunc. It re-checks the algorithm family even
// though the parser already enforces WithValidMethods, so that a future
// change to the parser options cannot silently hand an Ed25519 public key to
// an HMAC verifier.
func (t *Tokens) verificationKey(tok *jwt.Token) (any, error) {
	if _, ok := tok.Method.(*jwt.SigningMethodEd25519); !ok {
		return nil, errWrongKeyClass
	}
	kid, _ := tok.Header["kid"].(string)
	if kid == "" {
		return nil, errMissingKeyID
	}
	pub, ok := t.verifiers[kid]
	if !ok {
		return nil, errUnknownKeyID
	}
	return pub, nil
}

// rejectReason turns a parser error into a short human-readable reason. It
// reports every failed claim check, since a token can be both expired and
// for the wrong audience, and uses the partially decoded claims only to
// name missing claims, never to echo their values.
func rejectReason(err error, tok *jwt.Token, c *tokenClaims) string {
	switch {
	case errors.Is(err, errMissingKeyID):
		return "missing key id (kid) header"
	case errors.Is(err, errUnknownKeyID):
		return "unknown signing key"
	case errors.Is(err, errWrongKeyClass):
		return "signing algorithm not allowed (want EdDSA)"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok != nil && tok.Method != nil && tok.Method.Alg() != algEdDSA {
			return "signing algorithm not allowed (want EdDSA)"
		}
		return "invalid signature"
	}
	var reasons []string
	if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
		if c.ExpiresAt == nil {
			reasons = append(reasons, "missing exp claim")
		}
		if c.Issuer == "" {
			reasons = append(reasons, "missing iss claim")
		}
		if len(c.Audience) == 0 || slices.Equal(c.Audience, jwt.ClaimStrings{""}) {
			reasons = append(reasons, "missing aud claim")
		}
	}
	for _, r := range []struct {
		err    error
		reason string
	}{
		{jwt.ErrTokenExpired, "token expired"},
		{jwt.ErrTokenNotValidYet, "token not valid yet"},
		{jwt.ErrTokenUsedBeforeIssued, "token issued in the future"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
	} {
		if errors.Is(err, r.err) {
			reasons = append(reasons, r.reason)
		}
	}
	if len(reasons) == 0 {
		return "token rejected"
	}
	return strings.Join(reasons, ", ")
}

func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, reason)
}

// JWKS returns the public keys of all configured signing keys, active key
// first, for publishing at a JWKS endpoint so that other services can verify
// tokens themselves.
func (t *Tokens) JWKS() JWKS {
	return JWKS{Keys: slices.Clone(t.jwks.Keys)}
}

// JWKS is a JSON Web Key Set (RFC 7517).
type JWKS struct {
	// Keys lists the public keys.
	Keys []JWK `json:"keys"`
}

// JWK is one public Ed25519 key in JWK form (RFC 8037).
type JWK struct {
	// Kty is the key type, always "OKP".
	Kty string `json:"kty"`
	// Crv is the curve, always "Ed25519".
	Crv string `json:"crv"`
	// X is the public key, base64url without padding.
	X string `json:"x"`
	// Kid is the key id matching the token "kid" header.
	Kid string `json:"kid"`
	// Use is the intended use, always "sig".
	Use string `json:"use"`
	// Alg is the algorithm, always "EdDSA".
	Alg string `json:"alg"`
}

func publicJWK(kid string, pub ed25519.PublicKey) JWK {
	return JWK{
		Kty: "OKP",
		Crv: "Ed25519",
		X:   base64.RawURLEncoding.EncodeToString(pub),
		Kid: kid,
		Use: "sig",
		Alg: algEdDSA,
	}
}

// randomToken returns n random bytes as unpadded base64url.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
