package codes

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"
)

// refFromBits is an independent reading of "the first 75 bits as 15 symbols":
// treat the first 10 bytes as a big-endian integer, drop the 5 low bits, and
// write the rest in base 32.
func refFromBits(t *testing.T, b []byte) Code {
	t.Helper()
	n := new(big.Int).SetBytes(b[:10])
	n.Rsh(n, 5)
	payload := make([]byte, 15)
	mask := big.NewInt(31)
	for i := 14; i >= 0; i-- {
		payload[i] = Alphabet[new(big.Int).And(n, mask).Int64()]
		n.Rsh(n, 5)
	}
	c, err := FromPayload(string(payload))
	if err != nil {
		t.Fatalf("FromPayload: %v", err)
	}
	return c
}

// countingReader records how much Generate reads.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestGenerateFromFixedBits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		bits []byte
		want string
	}{
		{"all zero bits", make([]byte, 10), "0000-0000-0000-0000"},
		{"all one bits", bytes.Repeat([]byte{0xff}, 10), "ZZZZ-ZZZZ-ZZZZ-ZZZF"},
		// Only the 5 lowest bits of the tenth byte are unused.
		{"unused bits ignored", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1f}, "0000-0000-0000-0000"},
		{"lowest used bit", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20}, "0000-0000-0000-001Y"},
		{"highest bit", []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ""},
		{"counting", []byte{0x00, 0x44, 0x32, 0x14, 0xc7, 0x42, 0x54, 0xb6, 0x35, 0xcf}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &countingReader{r: bytes.NewReader(append(tc.bits, 0xAA, 0xBB))}
			c, err := Generate(r)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if r.n != 10 {
				t.Errorf("Generate read %d bytes, want 10", r.n)
			}
			if want := refFromBits(t, tc.bits); c != want {
				t.Errorf("Generate = %v, reference gives %v", c, want)
			}
			if tc.want != "" && c.String() != tc.want {
				t.Errorf("Generate = %v, want %v", c, tc.want)
			}
		})
	}
}

func TestGenerateShortRead(t *testing.T) {
	t.Parallel()
	_, err := Generate(bytes.NewReader(make([]byte, 9)))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Generate with 9 bytes: error = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestGenerateRandomCodesAreValid(t *testing.T) {
	t.Parallel()
	seen := make(map[Code]bool)
	for range 1000 {
		c, err := Generate(rand.Reader)
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if again, err := Parse(c.String()); err != nil || again != c {
			t.Fatalf("generated code %v does not re-parse: %v", c, err)
		}
		if seen[c] {
			t.Fatalf("code %v generated twice in 1000 draws of 75 bits", c)
		}
		seen[c] = true
	}
}

func testSecret(fill byte) []byte { return bytes.Repeat([]byte{fill}, 32) }

func TestDeriveMatchesSpec(t *testing.T) {
	t.Parallel()
	seq := make([]byte, 32)
	for i := range seq {
		seq[i] = byte(i)
	}
	tests := []struct {
		name    string
		secret  []byte
		subject int64
		attempt uint32
		want    string // pinned, and cross-checked with a Python HMAC implementation
	}{
		{"first subject", seq, 1, 0, "BY9C-THYJ-Z754-YT8Y"},
		{"retry", seq, 1, 1, "NDC6-24HX-EX04-NJBJ"},
		{"negative subject", seq, -1, 0, "364Y-GGT7-GKQZ-6P0X"},
		{"large values", testSecret(0xA5), 1<<62 + 12345, 1<<32 - 1, "RGJ6-PAQ1-K580-Z6SS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			msg := []byte("enroll/code/v1")
			msg = binary.BigEndian.AppendUint64(msg, uint64(tc.subject))
			msg = binary.BigEndian.AppendUint32(msg, tc.attempt)
			mac := hmac.New(sha256.New, tc.secret)
			mac.Write(msg)
			want := refFromBits(t, mac.Sum(nil))

			got := Derive(tc.secret, tc.subject, tc.attempt)
			if got != want {
				t.Errorf("Derive = %v, reference gives %v", got, want)
			}
			if got.String() != tc.want {
				t.Errorf("Derive = %v, pinned value %v", got, tc.want)
			}
			if again := Derive(tc.secret, tc.subject, tc.attempt); again != got {
				t.Errorf("Derive is not deterministic: %v then %v", got, again)
			}
		})
	}
}

func TestDeriveDiffers(t *testing.T) {
	t.Parallel()
	secretA, secretB := testSecret(1), testSecret(2)
	// A secret differing only in length must also give other codes.
	secretLong := append(testSecret(1), 1)
	seen := make(map[Code]string)
	record := func(c Code, what string) {
		t.Helper()
		if again, err := Parse(c.Compact()); err != nil || again != c {
			t.Fatalf("%s: derived code %v does not re-parse: %v", what, c, err)
		}
		if prev, ok := seen[c]; ok {
			t.Fatalf("%s and %s derive the same code", prev, what)
		}
		seen[c] = what
	}
	for subject := int64(-50); subject < 200; subject++ {
		for attempt := range uint32(4) {
			record(Derive(secretA, subject, attempt), "A/subject/attempt")
			record(Derive(secretB, subject, attempt), "B/subject/attempt")
			record(Derive(secretLong, subject, attempt), "long/subject/attempt")
		}
	}
}

func TestDeriveRejectsShortSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		secret []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"31 bytes", make([]byte, 31)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("Derive did not panic")
				}
				if msg, _ := r.(string); !strings.Contains(msg, "32 bytes") {
					t.Errorf("panic %v does not explain the minimum", r)
				}
			}()
			Derive(tc.secret, 1, 0)
		})
	}
}
