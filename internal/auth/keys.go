package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// maxKeyIDLen bounds key ids; they travel in every token header and in the
// JWKS document, so there is no reason for them to be long.
const maxKeyIDLen = 64

// SigningKey is an Ed25519 key pair that signs or verifies tokens. ID is
// published as the "kid" header of tokens it signs and in the JWKS.
type SigningKey struct {
	// ID is the key id ("kid"); see ValidateKeyID for the allowed form.
	ID string
	// Private is the Ed25519 private key (seed followed by public key).
	Private ed25519.PrivateKey
}

// Public returns the public half of the key.
func (k SigningKey) Public() ed25519.PublicKey {
	pub, _ := k.Private.Public().(ed25519.PublicKey)
	return pub
}

// String names the key by id only, so that logging a SigningKey or a
// configuration struct containing one never prints key material.
func (k SigningKey) String() string { return "SigningKey(" + k.ID + ")" }

// GoString redacts the key for %#v for the same reason as String.
func (k SigningKey) GoString() string {
	return fmt.Sprintf("auth.SigningKey{ID: %q, Private: <redacted>}", k.ID)
}

// validate checks the id and that the private key is well formed. A key whose
// embedded public half does not match its seed would sign tokens that the
// published JWKS can never verify, so it is rejected up front.
func (k SigningKey) validate() error {
	if err := ValidateKeyID(k.ID); err != nil {
		return err
	}
	if len(k.Private) != ed25519.PrivateKeySize {
		return fmt.Errorf("signing key %q: private key must be %d bytes", k.ID, ed25519.PrivateKeySize)
	}
	if !bytes.Equal(ed25519.NewKeyFromSeed(k.Private.Seed()), k.Private) {
		return fmt.Errorf("signing key %q: public half does not match seed", k.ID)
	}
	return nil
}

// ValidateKeyID checks that id is usable as a key id: 1 to 64 characters from
// [A-Za-z0-9._-]. The restriction keeps ids unambiguous in the
// "kid:seed,kid:seed" key specification and safe to log.
func ValidateKeyID(id string) error {
	if id == "" {
		return errors.New("key id is empty")
	}
	if len(id) > maxKeyIDLen {
		return fmt.Errorf("key id is longer than %d characters", maxKeyIDLen)
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("key id %q may only contain letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// GenerateSigningKey returns a fresh random Ed25519 key with the given id.
func GenerateSigningKey(id string) (SigningKey, error) {
	if err := ValidateKeyID(id); err != nil {
		return SigningKey{}, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("generate signing key: %w", err)
	}
	return SigningKey{ID: id, Private: priv}, nil
}

// EncodeSigningKey renders k as "kid:base64(seed)", the format
// ParseSigningKeys reads, for writing development key files. The result is
// secret.
func EncodeSigningKey(k SigningKey) string {
	return k.ID + ":" + base64.StdEncoding.EncodeToString(k.Private.Seed())
}

// ParseSigningKeys parses a comma-separated key specification of the form
// "kid1:base64(seed),kid2:base64(seed)", where each seed is the 32-byte
// Ed25519 seed in standard or URL-safe base64, padded or not. The first key
// is the active signer; the others only verify, which lets a new key be
// rolled out while tokens signed by the previous one are still live.
// Whitespace around entries is ignored because specifications usually come
// from environment variables or files.
//
// Error messages name the entry by position and key id but never include any
// part of the seed, so they are safe to log.
func ParseSigningKeys(spec string) ([]SigningKey, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("signing key specification is empty")
	}
	entries := strings.Split(spec, ",")
	keys := make([]SigningKey, 0, len(entries))
	seen := make(map[string]bool, len(entries))
	for i, entry := range entries {
		n := i + 1
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("signing key entry %d is empty", n)
		}
		id, encoded, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("signing key entry %d: want kid:base64(seed)", n)
		}
		id = strings.TrimSpace(id)
		if err := ValidateKeyID(id); err != nil {
			return nil, fmt.Errorf("signing key entry %d: %w", n, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("signing key entry %d: duplicate key id %q", n, id)
		}
		seen[id] = true
		seed, ok := decodeSeed(strings.TrimSpace(encoded))
		if !ok {
			return nil, fmt.Errorf("signing key %q: seed is not valid base64", id)
		}
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing key %q: seed must be %d bytes, got %d", id, ed25519.SeedSize, len(seed))
		}
		keys = append(keys, SigningKey{ID: id, Private: ed25519.NewKeyFromSeed(seed)})
	}
	return keys, nil
}

// decodeSeed accepts every common base64 flavour because seeds are pasted by
// hand from different tools. It deliberately returns no decoder error, whose
// text could hint at the input.
func decodeSeed(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding,
	} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}
