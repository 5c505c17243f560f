package auth

import (
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestHashSecretRoundTrip(t *testing.T) {
	t.Parallel()
	secret, err := NewClientSecret()
	if err != nil {
		t.Fatalf("NewClientSecret: %v", err)
	}
	h1, err := HashSecret(secret)
	if err != nil {
		t.Fatalf("HashSecret: %v", err)
	}
	if want := "$argon2id$v=19$m=19456,t=2,p=1$"; !strings.HasPrefix(h1, want) {
		t.Errorf("hash %q does not start with %q", h1, want)
	}
	if strings.Contains(h1, secret) {
		t.Error("hash contains the secret")
	}
	h2, err := HashSecret(secret)
	if err != nil {
		t.Fatalf("HashSecret: %v", err)
	}
	if h1 == h2 {
		t.Error("two hashes of the same secret are equal; salt is not random")
	}
	tests := []struct {
		name   string
		hash   string
		secret string
		want   bool
	}{
		{name: "right secret", hash: h1, secret: secret, want: true},
		{name: "right secret, second salt", hash: h2, secret: secret, want: true},
		{name: "wrong secret", hash: h1, secret: secret[:len(secret)-1] + "x", want: false},
		{name: "empty secret", hash: h1, secret: "", want: false},
		{name: "secret with suffix", hash: h1, secret: secret + "x", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := VerifySecret(tt.hash, tt.secret)
			if err != nil {
				t.Fatalf("VerifySecret: %v", err)
			}
			if got != tt.want {
				t.Errorf("VerifySecret = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestVerifySecretReadsParams checks that cost parameters come from the
// stored string, so hashes made with older parameters keep working.
func TestVerifySecretReadsParams(t *testing.T) {
	t.Parallel()
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("s3cret"), salt, 1, 8*1024, 2, 24)
	encoded := argonParams{memory: 8 * 1024, time: 1, threads: 2}.encode(salt, key)
	ok, err := VerifySecret(encoded, "s3cret")
	if err != nil || !ok {
		t.Errorf("VerifySecret(%q) = %v, %v; want true", encoded, ok, err)
	}
}

func TestVerifySecretMalformed(t *testing.T) {
	t.Parallel()
	salt := base64.RawStdEncoding.EncodeToString([]byte("0123456789abcdef"))
	sum := base64.RawStdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name    string
		encoded string
	}{
		{name: "empty", encoded: ""},
		{name: "plaintext", encoded: "ecs_plaintext"},
		{name: "bcrypt", encoded: "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"},
		{name: "argon2i", encoded: "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + sum},
		{name: "old version", encoded: "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + sum},
		{name: "missing hash", encoded: "$argon2id$v=19$m=19456,t=2,p=1$" + salt},
		{name: "extra field", encoded: "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + sum + "$x"},
		{name: "missing parameter", encoded: "$argon2id$v=19$m=19456,t=2$" + salt + "$" + sum},
		{name: "repeated parameter", encoded: "$argon2id$v=19$m=19456,m=19456,t=2$" + salt + "$" + sum},
		{name: "unknown parameter", encoded: "$argon2id$v=19$m=19456,t=2,x=1$" + salt + "$" + sum},
		{name: "non-numeric parameter", encoded: "$argon2id$v=19$m=lots,t=2,p=1$" + salt + "$" + sum},
		{name: "zero time", encoded: "$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + sum},
		{name: "zero threads", encoded: "$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + sum},
		{name: "huge memory", encoded: "$argon2id$v=19$m=4194304,t=2,p=1$" + salt + "$" + sum},
		{name: "huge time", encoded: "$argon2id$v=19$m=19456,t=1000,p=1$" + salt + "$" + sum},
		{name: "salt not base64", encoded: "$argon2id$v=19$m=19456,t=2,p=1$!!!!$" + sum},
		{name: "salt too short", encoded: "$argon2id$v=19$m=19456,t=2,p=1$YWJj$" + sum},
		{name: "hash too short", encoded: "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$YWJj"},
		{name: "padded base64", encoded: "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + sum + "="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ok, err := VerifySecret(tt.encoded, "whatever")
			if err == nil {
				t.Fatalf("VerifySecret accepted malformed hash (match=%v)", ok)
			}
			if ok {
				t.Error("VerifySecret returned true with an error")
			}
			if !errors.Is(err, ErrMalformedHash) {
				t.Errorf("error %v does not wrap ErrMalformedHash", err)
			}
			if strings.Contains(err.Error(), sum) || strings.Contains(err.Error(), salt) {
				t.Errorf("error %q echoes hash material", err)
			}
		})
	}
}

func TestHashSecretRejectsEmpty(t *testing.T) {
	t.Parallel()
	if h, err := HashSecret(""); err == nil {
		t.Errorf("HashSecret(\"\") = %q, want error", h)
	}
}

func TestVerifyUnknownClient(t *testing.T) {
	t.Parallel()
	if _, err := VerifySecret(dummyHash, "x"); err != nil {
		t.Fatalf("dummy hash is malformed, so the timing decoy would return early: %v", err)
	}
	if VerifyUnknownClient("anything") {
		t.Error("VerifyUnknownClient returned true")
	}
}

func TestNewClientID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prefix  string
		wantErr bool
	}{
		{name: "cli prefix", prefix: "cli_"},
		{name: "empty prefix", prefix: ""},
		{name: "dash prefix", prefix: "partner-"},
		{name: "uppercase prefix", prefix: "CLI_", wantErr: true},
		{name: "colon prefix", prefix: "cli:", wantErr: true},
		{name: "long prefix", prefix: strings.Repeat("a", 17), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := NewClientID(tt.prefix)
			if tt.wantErr {
				if err == nil {
					t.Errorf("NewClientID(%q) = %q, want error", tt.prefix, id)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewClientID: %v", err)
			}
			re := regexp.MustCompile("^" + regexp.QuoteMeta(tt.prefix) + "[a-z2-7]{20}$")
			if !re.MatchString(id) {
				t.Errorf("NewClientID(%q) = %q, want prefix + 20 base32 chars", tt.prefix, id)
			}
			if other, _ := NewClientID(tt.prefix); other == id {
				t.Errorf("two client ids are equal: %q", id)
			}
		})
	}
}

func TestNewClientSecret(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 8 {
		s, err := NewClientSecret()
		if err != nil {
			t.Fatalf("NewClientSecret: %v", err)
		}
		body, ok := strings.CutPrefix(s, "ecs_")
		if !ok {
			t.Fatalf("secret %q lacks the ecs_ prefix", s)
		}
		raw, err := base64.RawURLEncoding.DecodeString(body)
		if err != nil || len(raw) < 32 {
			t.Errorf("secret body decodes to %d bytes (err %v), want >= 32", len(raw), err)
		}
		if seen[s] {
			t.Errorf("duplicate secret %q", s)
		}
		seen[s] = true
	}
}
