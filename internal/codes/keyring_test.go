package codes

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Printable secrets make "the secret appears in the output" easy to detect in
// every rendering: raw, hex, base64 and fmt's []byte form.
var (
	secretOld = []byte("old-lookup-secret-0123456789abcdef")
	secretMid = []byte("mid-lookup-secret-0123456789abcdef")
	secretNew = []byte("new-lookup-secret-0123456789abcdef")
)

func mustCode(t testing.TB, s string) Code {
	t.Helper()
	c, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return c
}

func testKeyring(t testing.TB) *Keyring {
	t.Helper()
	k, err := NewKeyring(
		LookupKey{ID: "k3", Secret: secretNew},
		LookupKey{ID: "k2", Secret: secretMid},
		LookupKey{ID: "k1", Secret: secretOld},
	)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

// assertNoSecret fails if out shows secret in any of the ways fmt or an
// encoder could render it.
func assertNoSecret(t *testing.T, out string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range []string{
			string(s), hex.EncodeToString(s), fmt.Sprint(s),
			base64.StdEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s),
			string(s[:12]), base64.RawStdEncoding.EncodeToString(s)[:12],
		} {
			if strings.Contains(out, form) {
				t.Errorf("output %q contains secret material %q", out, form)
			}
		}
	}
}

func TestKeyringCandidates(t *testing.T) {
	t.Parallel()
	k := testKeyring(t)
	c := mustCode(t, "7M3K-X9Q2-VRT5-N8HH")
	if got := k.Current(); got != "k3" {
		t.Errorf("Current() = %q, want k3", got)
	}
	cands := k.Candidates(c)
	wantIDs := []string{"k3", "k2", "k1"}
	secrets := [][]byte{secretNew, secretMid, secretOld}
	if len(cands) != len(wantIDs) {
		t.Fatalf("Candidates returned %d digests, want %d", len(cands), len(wantIDs))
	}
	for i, d := range cands {
		if d.KeyID != wantIDs[i] {
			t.Errorf("candidate %d is key %q, want %q", i, d.KeyID, wantIDs[i])
		}
		mac := hmac.New(sha256.New, secrets[i])
		mac.Write([]byte("7M3KX9Q2VRT5N8HH"))
		if want := mac.Sum(nil); !bytes.Equal(d.Sum, want) {
			t.Errorf("candidate %q = %x, want HMAC-SHA256 of the compact code %x", d.KeyID, d.Sum, want)
		}
		sum, err := k.Sum(d.KeyID, c)
		if err != nil || !bytes.Equal(sum, d.Sum) {
			t.Errorf("Sum(%q) = %x, %v; want %x", d.KeyID, sum, err, d.Sum)
		}
		for _, other := range cands[:i] {
			if bytes.Equal(other.Sum, d.Sum) {
				t.Errorf("keys %q and %q give the same digest", other.KeyID, d.KeyID)
			}
		}
	}
	if got := k.Candidates(Code{}); got != nil {
		t.Errorf("Candidates(zero Code) = %v, want nil", got)
	}
}

func TestKeyringSum(t *testing.T) {
	t.Parallel()
	k := testKeyring(t)
	a := mustCode(t, "7M3K-X9Q2-VRT5-N8HH")
	b := mustCode(t, "0123-4567-89AB-CDEZ")
	tests := []struct {
		name  string
		keyID string
		code  Code
		err   error
	}{
		{"current key", "k3", a, nil},
		{"old key", "k1", a, nil},
		{"other code", "k3", b, nil},
		{"unknown key", "k4", a, ErrUnknownKey},
		{"empty key id", "", a, ErrUnknownKey},
		{"zero code", "k3", Code{}, nil},
	}
	seen := make(map[string]string)
	for _, tc := range tests {
		sum, err := k.Sum(tc.keyID, tc.code)
		if tc.code.IsZero() {
			if err == nil {
				t.Errorf("%s: Sum accepted the zero Code", tc.name)
			}
			continue
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: Sum error = %v, want %v", tc.name, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if len(sum) != sha256.Size {
			t.Errorf("%s: Sum has %d bytes, want 32", tc.name, len(sum))
		}
		if prev, ok := seen[string(sum)]; ok {
			t.Errorf("%s and %s give the same digest", prev, tc.name)
		}
		seen[string(sum)] = tc.name
	}
}

func TestKeyringCopiesSecrets(t *testing.T) {
	t.Parallel()
	secret := bytes.Clone(secretNew)
	k, err := NewKeyring(LookupKey{ID: "k1", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	c := mustCode(t, "7M3K-X9Q2-VRT5-N8HH")
	before, _ := k.Sum("k1", c)
	clear(secret)
	if after, _ := k.Sum("k1", c); !bytes.Equal(before, after) {
		t.Error("wiping the caller's secret changed the keyring")
	}
}

func TestNewKeyringRejects(t *testing.T) {
	t.Parallel()
	long := LookupKey{ID: "ok", Secret: secretNew}
	tests := []struct {
		name string
		keys []LookupKey
	}{
		{"no keys", nil},
		{"empty id", []LookupKey{{ID: "", Secret: secretNew}}},
		{"upper case id", []LookupKey{{ID: "K1", Secret: secretNew}}},
		{"id starts with hyphen", []LookupKey{{ID: "-k1", Secret: secretNew}}},
		{"id starts with underscore", []LookupKey{{ID: "_k1", Secret: secretNew}}},
		{"id with colon", []LookupKey{{ID: "k:1", Secret: secretNew}}},
		{"id of 33 characters", []LookupKey{{ID: strings.Repeat("a", 33), Secret: secretNew}}},
		{"31-byte secret", []LookupKey{{ID: "k1", Secret: secretNew[:31]}}},
		{"nil secret", []LookupKey{{ID: "k1"}}},
		{"duplicate id", []LookupKey{long, {ID: "k2", Secret: secretMid}, {ID: "ok", Secret: secretOld}}},
		{"bad second key", []LookupKey{long, {ID: "BAD", Secret: secretMid}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := NewKeyring(tc.keys...)
			if err == nil {
				t.Fatalf("NewKeyring accepted %v", k)
			}
			assertNoSecret(t, err.Error(), secretNew, secretMid, secretOld)
		})
	}
}

func TestNewKeyringAcceptsEdgeIDs(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, id string }{
		{"one character", "a"},
		{"digit first", "2026"},
		{"32 characters", strings.Repeat("z", 32)},
		{"hyphen and underscore", "k_2026-01"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := NewKeyring(LookupKey{ID: tc.id, Secret: secretNew[:32]})
			if err != nil {
				t.Fatalf("NewKeyring(%q): %v", tc.id, err)
			}
			if k.Current() != tc.id {
				t.Errorf("Current() = %q, want %q", k.Current(), tc.id)
			}
		})
	}
}

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	std := base64.StdEncoding.EncodeToString(secretNew)
	rawURL := base64.RawURLEncoding.EncodeToString(secretOld)
	k, err := ParseKeyring(" k3:" + std + " , k1:" + rawURL + "\n")
	if err != nil {
		t.Fatalf("ParseKeyring: %v", err)
	}
	if got := k.String(); got != "Keyring(k3, k1)" {
		t.Errorf("String() = %q", got)
	}
	want := testKeyring(t)
	c := mustCode(t, "7M3K-X9Q2-VRT5-N8HH")
	for _, id := range []string{"k3", "k1"} {
		got, _ := k.Sum(id, c)
		exp, _ := want.Sum(id, c)
		if !bytes.Equal(got, exp) {
			t.Errorf("key %s decoded to a different secret", id)
		}
	}
}

func TestParseKeyringErrorsHideSecrets(t *testing.T) {
	t.Parallel()
	enc := base64.StdEncoding.EncodeToString(secretNew)
	short := base64.StdEncoding.EncodeToString(secretNew[:31])
	tests := []struct {
		name, spec string
	}{
		{"empty", ""},
		{"blank", "  "},
		{"missing colon", enc},
		{"missing id", ":" + enc},
		{"secret where id belongs", enc + ":k1"},
		{"bad id", "Key One:" + enc},
		{"empty secret", "k1:"},
		{"not base64", "k1:" + enc[:20] + "!!" + enc[22:]},
		{"mixed alphabets", "k1:" + enc[:10] + "-+" + enc[12:]},
		{"wrong padding", "k1:" + enc + "="},
		{"short secret", "k1:" + short},
		{"duplicate id", "k1:" + enc + ",k1:" + enc},
		{"trailing comma", "k1:" + enc + ","},
		{"empty middle entry", "k2:" + enc + ",,k1:" + enc},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := ParseKeyring(tc.spec)
			if err == nil {
				t.Fatalf("ParseKeyring accepted the spec: %v", k)
			}
			assertNoSecret(t, err.Error(), secretNew)
			if len(tc.spec) >= 12 {
				for _, part := range strings.FieldsFunc(tc.spec, func(r rune) bool { return r == ':' || r == ',' }) {
					if len(part) >= 12 && strings.Contains(err.Error(), part[:12]) {
						t.Errorf("error %q repeats spec text %q", err, part[:12])
					}
				}
			}
		})
	}
}

func TestKeyringFormattingHidesSecrets(t *testing.T) {
	t.Parallel()
	k := testKeyring(t)
	key := LookupKey{ID: "k9", Secret: secretNew}
	tests := []struct {
		name   string
		format string
		arg    any
	}{
		{"String", "%s", k},
		{"v", "%v", k},
		{"plus v", "%+v", k},
		{"Go syntax", "%#v", k},
		{"hex", "%x", k},
		{"dereferenced value", "%+v", *k},
		{"dereferenced Go syntax", "%#v", *k},
		{"lookup key", "%+v", key},
		{"lookup key Go syntax", "%#v", key},
		{"in a struct", "%+v", struct{ K *Keyring }{k}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := fmt.Sprintf(tc.format, tc.arg)
			assertNoSecret(t, out, secretNew, secretMid, secretOld)
		})
	}
	if got, want := k.String(), "Keyring(k3, k2, k1)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func BenchmarkKeyringSum(b *testing.B) {
	k := testKeyring(b)
	c := mustCode(b, "7M3K-X9Q2-VRT5-N8HH")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Sum("k3", c); err != nil {
			b.Fatal(err)
		}
	}
}
