package codes

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
)

// MasterKeySize is the AES-256 key length that NewMasterKey requires.
const MasterKeySize = 32

// BatchSecretSize is the length of the secrets NewBatchSecret makes and the
// minimum Derive accepts.
const BatchSecretSize = 32

// ErrUnwrap is returned by MasterKey.Unwrap for any wrapped secret that does
// not authenticate: a different master key, different additional data, or a
// modified or truncated blob. The causes are deliberately not told apart.
var ErrUnwrap = errors.New("codes: wrapped secret does not authenticate; wrong master key, wrong additional data, or damaged data")

// MasterKey wraps per-batch secrets with AES-256-GCM so that only wrapped
// secrets are stored; deleting a wrapped secret destroys the batch's codes. A
// MasterKey is safe for concurrent use.
type MasterKey struct {
	id string
	// aead is an interface holding a pointer, so printing a MasterKey value
	// (bypassing String) cannot show key material.
	aead cipher.AEAD
}

// NewMasterKey makes a master key from 32 key bytes. id names the key so that
// wrapped secrets can record which key wrapped them; it follows the same
// pattern as LookupKey IDs.
func NewMasterKey(id string, key []byte) (*MasterKey, error) {
	if !validKeyID(id) {
		return nil, errors.New("codes: master key id must match ^[a-z0-9][a-z0-9_-]{0,31}$")
	}
	if len(key) != MasterKeySize {
		return nil, fmt.Errorf("codes: master key %q has %d bytes, needs exactly %d", id, len(key), MasterKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("codes: master key %q: %w", id, err)
	}
	// Random 96-bit nonces are safe up to 2^32 wraps per key, far more
	// than there will ever be batches, and need no nonce bookkeeping.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("codes: master key %q: %w", id, err)
	}
	return &MasterKey{id: id, aead: aead}, nil
}

// ParseMasterKey makes a master key from "id:base64key", the key in standard
// or URL base64, padded or not. Error messages never include the key text.
func ParseMasterKey(spec string) (*MasterKey, error) {
	id, key, err := parseKeySpec(strings.TrimSpace(spec))
	if err != nil {
		return nil, fmt.Errorf("codes: master key spec: %w", err)
	}
	return NewMasterKey(id, key)
}

// ID returns the key's name.
func (m *MasterKey) ID() string { return m.id }

// Wrap encrypts and authenticates secret, binding it to additionalData. The
// result is a random 12-byte nonce followed by the ciphertext and tag. Pass
// something that identifies the batch (and the master key ID) as
// additionalData, so that a wrapped secret copied onto another batch's row
// fails to unwrap.
func (m *MasterKey) Wrap(secret, additionalData []byte) ([]byte, error) {
	if len(secret) == 0 {
		return nil, errors.New("codes: refusing to wrap an empty secret")
	}
	return m.aead.Seal(nil, nil, secret, additionalData), nil
}

// Unwrap reverses Wrap given the same additionalData. Any mismatch or damage
// gives ErrUnwrap.
func (m *MasterKey) Unwrap(wrapped, additionalData []byte) ([]byte, error) {
	secret, err := m.aead.Open(nil, nil, wrapped, additionalData)
	if err != nil {
		return nil, ErrUnwrap
	}
	return secret, nil
}

// String returns the key ID only, so that logging a MasterKey is safe.
func (m *MasterKey) String() string { return "MasterKey(" + m.id + ")" }

// GoString is String, so that %#v does not print key material either.
func (m *MasterKey) GoString() string { return m.String() }

// NewBatchSecret returns 32 bytes from crypto/rand, the secret Derive turns
// into a batch's codes.
func NewBatchSecret() ([]byte, error) {
	b := make([]byte, BatchSecretSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("codes: reading randomness: %w", err)
	}
	return b, nil
}
