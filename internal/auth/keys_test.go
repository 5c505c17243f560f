package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

func TestParseSigningKeysRoundTrip(t *testing.T) {
	t.Parallel()
	k1, k2 := mustKey(t, "2030-01"), mustKey(t, "2029-12")
	seed2 := k2.Private.Seed()
	tests := []struct {
		name string
		spec string
	}{
		{name: "encoded", spec: EncodeSigningKey(k1) + "," + EncodeSigningKey(k2)},
		{name: "whitespace and newline", spec: " " + EncodeSigningKey(k1) + " ,\n" + EncodeSigningKey(k2) + "\n"},
		{name: "url-safe unpadded seed", spec: EncodeSigningKey(k1) + ",2029-12:" + base64.RawURLEncoding.EncodeToString(seed2)},
		{name: "std unpadded seed", spec: EncodeSigningKey(k1) + ",2029-12:" + base64.RawStdEncoding.EncodeToString(seed2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys, err := ParseSigningKeys(tt.spec)
			if err != nil {
				t.Fatalf("ParseSigningKeys: %v", err)
			}
			if len(keys) != 2 {
				t.Fatalf("got %d keys, want 2", len(keys))
			}
			for i, want := range []SigningKey{k1, k2} {
				if keys[i].ID != want.ID || !keys[i].Private.Equal(want.Private) {
					t.Errorf("key %d = %v, want %v (order decides the active signer)", i, keys[i], want)
				}
			}
		})
	}
}

func TestParseSigningKeysErrors(t *testing.T) {
	t.Parallel()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(0xA0 + i)
	}
	good := base64.StdEncoding.EncodeToString(seed)
	short := base64.StdEncoding.EncodeToString(seed[:31])
	tests := []struct {
		name    string
		spec    string
		wantMsg string
	}{
		{name: "empty", spec: "", wantMsg: "empty"},
		{name: "blank", spec: "  \n", wantMsg: "empty"},
		{name: "trailing comma", spec: "k1:" + good + ",", wantMsg: "entry 2 is empty"},
		{name: "missing colon", spec: "k1" + good, wantMsg: "want kid:base64(seed)"},
		{name: "empty kid", spec: ":" + good, wantMsg: "key id is empty"},
		{name: "kid with space", spec: "k 1:" + good, wantMsg: "may only contain"},
		{name: "duplicate kid", spec: "k1:" + good + ",k1:" + good, wantMsg: "duplicate key id"},
		{name: "bad base64", spec: "k1:" + good[:10] + "!!" + good[12:], wantMsg: "not valid base64"},
		{name: "short seed", spec: "k1:" + short, wantMsg: "seed must be 32 bytes, got 31"},
		{name: "full private key instead of seed", spec: "k1:" + base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed)), wantMsg: "got 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys, err := ParseSigningKeys(tt.spec)
			if err == nil {
				t.Fatalf("ParseSigningKeys succeeded with %d keys, want error", len(keys))
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q does not mention %q", msg, tt.wantMsg)
			}
			// Key material must never leak into logs via error text.
			for _, secret := range []string{good[:8], short[:8], good[12:20]} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q echoes key material %q", msg, secret)
				}
			}
		})
	}
}

func TestGenerateSigningKey(t *testing.T) {
	t.Parallel()
	a, err := GenerateSigningKey("dev-1")
	if err != nil {
		t.Fatalf("GenerateSigningKey: %v", err)
	}
	b := mustKey(t, "dev-1")
	if a.ID != "dev-1" || len(a.Private) != ed25519.PrivateKeySize {
		t.Errorf("generated key %v has wrong id or size %d", a, len(a.Private))
	}
	if a.Private.Equal(b.Private) {
		t.Error("two generated keys are equal")
	}
	if _, err := GenerateSigningKey("bad:id"); err == nil {
		t.Error("GenerateSigningKey accepted an id containing ':'")
	}
	if _, err := GenerateSigningKey(strings.Repeat("k", maxKeyIDLen+1)); err == nil {
		t.Error("GenerateSigningKey accepted an overlong id")
	}
}

func TestSigningKeyFormattingRedacts(t *testing.T) {
	t.Parallel()
	k := mustKey(t, "k1")
	leaks := []string{
		fmt.Sprint([]byte(k.Private.Seed())[:8]),
		fmt.Sprintf("%x", k.Private.Seed()[:8]),
		base64.StdEncoding.EncodeToString(k.Private.Seed())[:12],
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{k, TokenConfig{Issuer: "i", Keys: []SigningKey{k}}} {
			out := fmt.Sprintf(format, v)
			if !strings.Contains(out, "k1") {
				t.Errorf("%s of %T = %q; want the key id", format, v, out)
			}
			for _, leak := range leaks {
				if strings.Contains(out, strings.Trim(leak, "[]")) {
					t.Errorf("%s of %T = %q leaks key material", format, v, out)
				}
			}
		}
	}
}
