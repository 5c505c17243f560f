package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for new hashes: the OWASP minimum recommendation
// (19 MiB, 2 passes, 1 lane). Memory is kept modest on purpose because every
// token request hashes once and many may run at the same time.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// Bounds on parameters read back from a stored hash. A corrupted or
// tampered row must not be able to make one verification allocate gigabytes
// or spin for minutes.
const (
	maxArgonMemoryKiB = 256 * 1024
	maxArgonTime      = 10
	maxArgonThreads   = 16
	minArgonSaltLen   = 8
	minArgonKeyLen    = 16
	maxArgonKeyLen    = 64
)

const (
	clientSecretPrefix = "ecs_"
	clientSecretBytes  = 32
	clientIDRandLen    = 20
	maxClientIDPrefix  = 16
	base32Lower        = "abcdefghijklmnopqrstuvwxyz234567"
)

// ErrMalformedHash is wrapped by VerifySecret when the stored hash cannot be
// parsed, which indicates data corruption rather than a wrong secret.
var ErrMalformedHash = errors.New("malformed secret hash")

// NewClientID returns prefix followed by 20 random lowercase base32
// characters (100 bits), e.g. "cli_k3v7...". Ids are not secret but are
// random so they cannot be enumerated. The prefix may be empty or up to 16
// characters from [a-z0-9_-], which keeps ids safe in URLs and logs.
func NewClientID(prefix string) (string, error) {
	if len(prefix) > maxClientIDPrefix {
		return "", fmt.Errorf("client id prefix is longer than %d characters", maxClientIDPrefix)
	}
	for _, c := range prefix {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return "", fmt.Errorf("client id prefix %q may only contain a-z, 0-9, '_' and '-'", prefix)
		}
	}
	b := make([]byte, clientIDRandLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new client id: %w", err)
	}
	for i := range b {
		// 256 is a multiple of 32, so masking keeps the choice unbiased.
		b[i] = base32Lower[b[i]&31]
	}
	return prefix + string(b), nil
}

// NewClientSecret returns a new client secret: "ecs_" followed by 32 random
// bytes in unpadded base64url. The prefix makes leaked secrets easy to find
// with secret scanners. Show it to the client once and store only
// HashSecret of it.
func NewClientSecret() (string, error) {
	s, err := randomToken(clientSecretBytes)
	if err != nil {
		return "", fmt.Errorf("new client secret: %w", err)
	}
	return clientSecretPrefix + s, nil
}

// HashSecret hashes secret with argon2id and a random salt, returning the
// PHC string "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>" (standard base64
// without padding). The parameters are stored in the string so they can be
// raised later without invalidating existing hashes.
func HashSecret(secret string) (string, error) {
	if secret == "" {
		return "", errors.New("hash secret: secret is empty")
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash secret: %w", err)
	}
	p := argonParams{memory: argonMemoryKiB, time: argonTime, threads: argonThreads}
	key := argon2.IDKey([]byte(secret), salt, p.time, p.memory, p.threads, argonKeyLen)
	return p.encode(salt, key), nil
}

// VerifySecret reports whether secret matches the encoded hash produced by
// HashSecret. The argon2id parameters are read from encoded and the digests
// are compared in constant time. A malformed or out-of-bounds encoding is an
// error wrapping ErrMalformedHash, never a silent false, so corruption is
// noticed.
func VerifySecret(encoded, secret string) (bool, error) {
	p, salt, want, err := parseArgon2id(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(secret), salt, p.time, p.memory, p.threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is verified against when a client id is unknown; see
// VerifyUnknownClient.
var dummyHash = argonParams{memory: argonMemoryKiB, time: argonTime, threads: argonThreads}.
	encode(make([]byte, argonSaltLen), make([]byte, argonKeyLen))

// VerifyUnknownClient spends the same time as VerifySecret and always returns
// false. Call it when the presented client id does not exist so that response
// time does not reveal which client ids are registered.
func VerifyUnknownClient(secret string) bool {
	_, _ = VerifySecret(dummyHash, secret)
	return false
}

type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
}

func (p argonParams) encode(salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key))
}

// parseArgon2id parses a PHC argon2id string. Its errors describe the
// structure that is wrong and never include the salt or digest.
func parseArgon2id(encoded string) (argonParams, []byte, []byte, error) {
	var p argonParams
	fail := func(what string) (argonParams, []byte, []byte, error) {
		return argonParams{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, what)
	}
	// "" before the leading '$', then algorithm, version, params, salt, hash.
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return fail("want $argon2id$v=..$m=..,t=..,p=..$salt$hash")
	}
	if parts[1] != "argon2id" {
		return fail("algorithm is not argon2id")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return fail("unsupported argon2 version")
	}
	var seen [3]bool
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return fail("want parameters m, t and p")
	}
	for _, f := range fields {
		name, val, ok := strings.Cut(f, "=")
		if !ok {
			return fail("bad parameter")
		}
		n, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return fail("bad parameter value")
		}
		switch name {
		case "m":
			p.memory, seen[0] = uint32(n), true
		case "t":
			p.time, seen[1] = uint32(n), true
		case "p":
			if n > maxArgonThreads {
				return fail("parameter p out of range")
			}
			p.threads, seen[2] = uint8(n), true
		default:
			return fail("unknown parameter")
		}
	}
	if seen != [3]bool{true, true, true} {
		return fail("want parameters m, t and p")
	}
	if p.time < 1 || p.time > maxArgonTime {
		return fail("parameter t out of range")
	}
	if p.threads < 1 {
		return fail("parameter p out of range")
	}
	// argon2 needs at least 8 KiB per lane.
	if p.memory < 8*uint32(p.threads) || p.memory > maxArgonMemoryKiB {
		return fail("parameter m out of range")
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < minArgonSaltLen {
		return fail("bad salt")
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < minArgonKeyLen || len(key) > maxArgonKeyLen {
		return fail("bad hash")
	}
	return p, salt, key, nil
}
