package identity

import (
	"bytes"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b Fields
	}{
		{"case, punctuation and accents", Fields{LastName: "O'Brien", DateOfBirth: "1980-02-03", SSN: "123-45-6789", PostalCode: "98101"},
			Fields{LastName: "OBRIÉN", DateOfBirth: "1980-02-03", SSN: "6789", PostalCode: "98101-1234"}},
		{"phone when no ssn", Fields{LastName: "Lee", Phone: "(206) 555-0147"}, Fields{LastName: "lee", Phone: "+1 206 555 0147"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := Normalize(tc.a)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Normalize(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if a != b {
				t.Fatalf("%q != %q", a, b)
			}
		})
	}
}

func TestNormalizeErrorsDoNotEchoInput(t *testing.T) {
	t.Parallel()
	for _, f := range []Fields{
		{LastName: "Smith", SSN: "12345"},
		{LastName: "Smith", DateOfBirth: "03/02/1980", SSN: "6789"},
		{LastName: "", SSN: "6789"},
		{LastName: "Smith"},
	} {
		_, err := Normalize(f)
		if err == nil {
			t.Fatalf("%+v accepted", f)
		}
		for _, secret := range []string{"12345", "03/02/1980"} {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q echoes input", err)
			}
		}
	}
}

func TestKeyDependsOnSecretAndTuple(t *testing.T) {
	t.Parallel()
	h1, _ := NewHasher(bytes.Repeat([]byte{1}, 32))
	h2, _ := NewHasher(bytes.Repeat([]byte{2}, 32))
	f := Fields{LastName: "Smith", SSN: "6789"}
	k1, _ := h1.Key(f)
	k2, _ := h2.Key(f)
	k3, _ := h1.Key(Fields{LastName: "Smith", SSN: "6780"})
	if bytes.Equal(k1, k2) || bytes.Equal(k1, k3) || len(k1) != 32 {
		t.Fatal("identity keys must differ by secret and by tuple")
	}
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
}
