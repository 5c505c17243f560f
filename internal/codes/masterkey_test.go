package codes

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var masterBytes = []byte("master-key-material-0123456789ab") // 32 bytes

func testMasterKey(t *testing.T, id string, key []byte) *MasterKey {
	t.Helper()
	m, err := NewMasterKey(id, key)
	if err != nil {
		t.Fatalf("NewMasterKey: %v", err)
	}
	return m
}

func TestMasterKeyRoundTrip(t *testing.T) {
	t.Parallel()
	m := testMasterKey(t, "m1", masterBytes)
	tests := []struct {
		name   string
		secret []byte
		ad     []byte
	}{
		{"batch secret", testSecret(7), []byte("batch:42/master:m1")},
		{"no additional data", testSecret(8), nil},
		{"one byte", []byte{1}, []byte("x")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w1, err := m.Wrap(tc.secret, tc.ad)
			if err != nil {
				t.Fatalf("Wrap: %v", err)
			}
			w2, err := m.Wrap(tc.secret, tc.ad)
			if err != nil {
				t.Fatalf("Wrap: %v", err)
			}
			if want := 12 + len(tc.secret) + 16; len(w1) != want {
				t.Errorf("wrapped length = %d, want nonce+secret+tag = %d", len(w1), want)
			}
			if bytes.Equal(w1, w2) || bytes.Equal(w1[:12], w2[:12]) {
				t.Error("two wraps share a nonce")
			}
			if bytes.Contains(w1, tc.secret) && len(tc.secret) > 4 {
				t.Error("wrapped blob contains the plaintext secret")
			}
			for _, w := range [][]byte{w1, w2} {
				got, err := m.Unwrap(w, tc.ad)
				if err != nil || !bytes.Equal(got, tc.secret) {
					t.Errorf("Unwrap = %x, %v; want %x", got, err, tc.secret)
				}
			}
		})
	}
}

func TestMasterKeyDetectsTampering(t *testing.T) {
	t.Parallel()
	m := testMasterKey(t, "m1", masterBytes)
	other := testMasterKey(t, "m2", bytes.Repeat([]byte{9}, 32))
	ad := []byte("batch:42")
	wrapped, err := m.Wrap(testSecret(3), ad)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     *MasterKey
		wrapped []byte
		ad      []byte
	}{
		{"wrong additional data", m, wrapped, []byte("batch:43")},
		{"missing additional data", m, wrapped, nil},
		{"wrong master key", other, wrapped, ad},
		{"truncated", m, wrapped[:len(wrapped)-1], ad},
		{"nonce only", m, wrapped[:12], ad},
		{"empty", m, nil, ad},
		{"extended", m, append(bytes.Clone(wrapped), 0), ad},
	}
	for i := range wrapped {
		flipped := bytes.Clone(wrapped)
		flipped[i] ^= 0x01
		tests = append(tests, struct {
			name    string
			key     *MasterKey
			wrapped []byte
			ad      []byte
		}{fmt.Sprintf("bit flipped in byte %d", i), m, flipped, ad})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.key.Unwrap(tc.wrapped, tc.ad)
			if !errors.Is(err, ErrUnwrap) {
				t.Fatalf("Unwrap error = %v, want ErrUnwrap", err)
			}
			if got != nil {
				t.Errorf("Unwrap returned %x alongside an error", got)
			}
		})
	}
}

func TestMasterKeyRejectsEmptySecret(t *testing.T) {
	t.Parallel()
	m := testMasterKey(t, "m1", masterBytes)
	if _, err := m.Wrap(nil, []byte("ad")); err == nil {
		t.Error("Wrap accepted an empty secret")
	}
}

func TestNewMasterKeyRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   string
		key  []byte
	}{
		{"16-byte key", "m1", masterBytes[:16]},
		{"31-byte key", "m1", masterBytes[:31]},
		{"33-byte key", "m1", append(bytes.Clone(masterBytes), 0)},
		{"nil key", "m1", nil},
		{"empty id", "", masterBytes},
		{"bad id", "Master Key", masterBytes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if m, err := NewMasterKey(tc.id, tc.key); err == nil {
				t.Fatalf("NewMasterKey accepted: %v", m)
			} else {
				assertNoSecret(t, err.Error(), masterBytes)
			}
		})
	}
}

func TestParseMasterKey(t *testing.T) {
	t.Parallel()
	enc := base64.StdEncoding.EncodeToString(masterBytes)
	ref := testMasterKey(t, "m1", masterBytes)
	ad := []byte("batch:1")
	wrapped, err := ref.Wrap(testSecret(5), ad)
	if err != nil {
		t.Fatal(err)
	}
	valid := []struct{ name, spec string }{
		{"standard base64", "m1:" + enc},
		{"raw URL base64", "m1:" + base64.RawURLEncoding.EncodeToString(masterBytes)},
		{"surrounding space", "  m1:" + enc + "\n"},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := ParseMasterKey(tc.spec)
			if err != nil {
				t.Fatalf("ParseMasterKey: %v", err)
			}
			if m.ID() != "m1" {
				t.Errorf("ID() = %q, want m1", m.ID())
			}
			if got, err := m.Unwrap(wrapped, ad); err != nil || !bytes.Equal(got, testSecret(5)) {
				t.Errorf("parsed key does not unwrap a secret wrapped by the same key: %v", err)
			}
		})
	}
	invalid := []struct{ name, spec string }{
		{"empty", ""},
		{"missing colon", enc},
		{"missing id", ":" + enc},
		{"not base64", "m1:" + enc[:20] + "*" + enc[21:]},
		{"short key", "m1:" + base64.StdEncoding.EncodeToString(masterBytes[:24])},
		{"two keys", "m1:" + enc + ",m2:" + enc},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := ParseMasterKey(tc.spec)
			if err == nil {
				t.Fatalf("ParseMasterKey accepted: %v", m)
			}
			assertNoSecret(t, err.Error(), masterBytes)
			if len(enc) > 0 && strings.Contains(err.Error(), enc[:12]) {
				t.Errorf("error %q repeats the key text", err)
			}
		})
	}
}

func TestMasterKeyFormattingHidesKey(t *testing.T) {
	t.Parallel()
	m := testMasterKey(t, "m1", masterBytes)
	for _, format := range []string{"%s", "%v", "%+v", "%#v", "%x"} {
		for _, arg := range []any{m, *m} {
			out := fmt.Sprintf(format, arg)
			assertNoSecret(t, out, masterBytes)
		}
	}
	if got, want := m.String(), "MasterKey(m1)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestNewBatchSecret(t *testing.T) {
	t.Parallel()
	a, err := NewBatchSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBatchSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || len(b) != 32 {
		t.Fatalf("lengths %d, %d; want 32", len(a), len(b))
	}
	if bytes.Equal(a, b) {
		t.Error("two batch secrets are equal")
	}
	// A fresh secret must be usable by Derive without panicking.
	if c := Derive(a, 1, 0); c.IsZero() {
		t.Error("Derive returned the zero Code")
	}
}
