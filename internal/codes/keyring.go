package codes

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MinLookupSecret is the shortest lookup-key secret accepted: the HMAC key
// must be at least as strong as the SHA-256 output it produces.
const MinLookupSecret = 32

// maxKeyID matches the {0,31} in the documented ID pattern.
const maxKeyID = 32

// ErrUnknownKey is returned by Keyring.Sum for a key ID that is not in the
// keyring, typically a digest stored under a key that has since been retired.
var ErrUnknownKey = errors.New("codes: lookup key id is not in the keyring")

// LookupKey is one HMAC key used to store and find codes. ID is stored next
// to each digest so that a lookup knows which key made it; it must match
// ^[a-z0-9][a-z0-9_-]{0,31}$. Secret must have at least MinLookupSecret
// bytes.
type LookupKey struct {
	ID     string
	Secret []byte
}

// String returns the key ID only, so that logging a LookupKey cannot leak its
// secret.
func (k LookupKey) String() string { return "LookupKey(" + k.ID + ")" }

// GoString is String, so that %#v does not print the secret either.
func (k LookupKey) GoString() string { return k.String() }

// Keyring holds the lookup keys, newest first. The newest key hashes codes
// being stored; all keys are tried when looking a code up, so that the key can
// be rotated without rehashing every stored digest at once. A Keyring is
// immutable and safe for concurrent use. Make one with NewKeyring or
// ParseKeyring; the zero Keyring has no keys.
type Keyring struct {
	// keys are pointers so that printing a Keyring value (bypassing
	// String) shows addresses, not secrets.
	keys []*keyEntry
}

type keyEntry struct {
	id     string
	secret []byte
}

// Digest is a code's HMAC under one lookup key.
type Digest struct {
	KeyID string
	Sum   []byte
}

// NewKeyring builds a keyring from keys given newest first; the first key is
// the current one. It rejects an empty list, malformed IDs, secrets shorter
// than MinLookupSecret and duplicate IDs. Secrets are copied, so the caller
// may wipe its own copies.
func NewKeyring(keys ...LookupKey) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("codes: a keyring needs at least one lookup key")
	}
	k := &Keyring{keys: make([]*keyEntry, 0, len(keys))}
	seen := make(map[string]bool, len(keys))
	for i, key := range keys {
		// Invalid IDs are not quoted: a misplaced secret could be
		// sitting where the ID should be.
		if !validKeyID(key.ID) {
			return nil, fmt.Errorf("codes: lookup key %d: id must match ^[a-z0-9][a-z0-9_-]{0,31}$", i+1)
		}
		if len(key.Secret) < MinLookupSecret {
			return nil, fmt.Errorf("codes: lookup key %q: secret has %d bytes, needs at least %d", key.ID, len(key.Secret), MinLookupSecret)
		}
		if seen[key.ID] {
			return nil, fmt.Errorf("codes: lookup key id %q appears more than once", key.ID)
		}
		seen[key.ID] = true
		k.keys = append(k.keys, &keyEntry{id: key.ID, secret: append([]byte(nil), key.Secret...)})
	}
	return k, nil
}

// ParseKeyring builds a keyring from a spec such as an environment variable:
// "id1:secret1,id2:secret2", newest first, each secret in standard or URL
// base64, padded or not. Spaces around entries are ignored. Error messages
// name entries by position and never include secret text.
func ParseKeyring(spec string) (*Keyring, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("codes: lookup keyring spec is empty; want id:base64secret[,id:base64secret...]")
	}
	entries := strings.Split(spec, ",")
	keys := make([]LookupKey, 0, len(entries))
	for i, entry := range entries {
		id, secret, err := parseKeySpec(strings.TrimSpace(entry))
		if err != nil {
			return nil, fmt.Errorf("codes: lookup keyring entry %d: %w", i+1, err)
		}
		keys = append(keys, LookupKey{ID: id, Secret: secret})
	}
	return NewKeyring(keys...)
}

// Current returns the ID of the newest key, the one new digests are made with,
// or "" for a Keyring not made by NewKeyring or ParseKeyring.
func (k *Keyring) Current() string {
	if len(k.keys) == 0 {
		return ""
	}
	return k.keys[0].id
}

// Sum returns HMAC-SHA256 of c.Compact() under the key keyID: 32 bytes. It
// fails with ErrUnknownKey if the key is not in the keyring, and refuses the
// zero Code so that an unparsed code can never match a stored digest.
func (k *Keyring) Sum(keyID string, c Code) ([]byte, error) {
	if c.IsZero() {
		return nil, errors.New("codes: cannot hash the zero Code")
	}
	for _, e := range k.keys {
		if e.id == keyID {
			return e.sum(c), nil
		}
	}
	return nil, ErrUnknownKey
}

// Candidates returns c's digest under every key, newest first: the stored
// digest for c equals one of them if c was issued under a live key. It returns
// nil for the zero Code.
func (k *Keyring) Candidates(c Code) []Digest {
	if c.IsZero() {
		return nil
	}
	out := make([]Digest, len(k.keys))
	for i, e := range k.keys {
		out[i] = Digest{KeyID: e.id, Sum: e.sum(c)}
	}
	return out
}

// String lists the key IDs, newest first, and never the secrets, so logging a
// keyring is safe.
func (k *Keyring) String() string {
	ids := make([]string, len(k.keys))
	for i, e := range k.keys {
		ids[i] = e.id
	}
	return "Keyring(" + strings.Join(ids, ", ") + ")"
}

// GoString is String, so that %#v does not print the secrets either.
func (k *Keyring) GoString() string { return k.String() }

func (e *keyEntry) sum(c Code) []byte {
	mac := hmac.New(sha256.New, e.secret)
	mac.Write(c.sym[:])
	return mac.Sum(make([]byte, 0, sha256.Size))
}

// validKeyID reports whether id matches ^[a-z0-9][a-z0-9_-]{0,31}$. IDs end
// up in database rows and log lines, so they are kept to a boring charset.
func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyID {
		return false
	}
	for i := range len(id) {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// parseKeySpec splits "id:base64" and decodes the secret. Its errors never
// contain the entry's text.
func parseKeySpec(entry string) (id string, secret []byte, err error) {
	id, enc, ok := strings.Cut(entry, ":")
	if !ok {
		return "", nil, errors.New("want id:base64secret")
	}
	if !validKeyID(id) {
		return "", nil, errors.New("id must match ^[a-z0-9][a-z0-9_-]{0,31}$")
	}
	secret, err = decodeSecret(enc)
	if err != nil {
		return "", nil, fmt.Errorf("key %q: %w", id, err)
	}
	return id, secret, nil
}

// decodeSecret accepts standard or URL-safe base64, padded or not. These
// never disagree: a string decodes under more than one of them only if it
// uses neither '+/' nor '-_' and is padded correctly or not at all, and then
// all of them give the same bytes.
func decodeSecret(enc string) ([]byte, error) {
	if enc == "" {
		return nil, errors.New("secret is empty")
	}
	for _, e := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		if b, err := e.Strict().DecodeString(enc); err == nil {
			return b, nil
		}
	}
	// The decoder's own error gives an offset into the secret; drop it.
	return nil, errors.New("secret is not valid base64")
}
