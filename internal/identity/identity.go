// Package identity turns the identity fields of an eligibility record into an identity key:
// a keyed HMAC of a normalised tuple. The key lets us recognise one person across cohorts and
// match a lost-code request, while no SSN, phone number or other raw identifier is ever stored.
package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Fields are the identity fields of one person as the company's systems know them.
type Fields struct {
	LastName    string
	DateOfBirth string // YYYY-MM-DD
	SSN         string // full or last four digits
	Phone       string // used when there is no SSN
	PostalCode  string
}

// Hasher computes identity keys under one secret.
type Hasher struct {
	secret []byte
}

// NewHasher returns a Hasher; the secret must be at least 32 bytes.
func NewHasher(secret []byte) (*Hasher, error) {
	if len(secret) < 32 {
		return nil, errors.New("identity key secret must be at least 32 bytes")
	}
	return &Hasher{secret: append([]byte(nil), secret...)}, nil
}

// Key normalises f and returns its keyed HMAC. Errors say which field to fix and never echo
// the value.
func (h *Hasher) Key(f Fields) ([]byte, error) {
	tuple, err := Normalize(f)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, h.secret)
	m.Write([]byte(tuple))
	return m.Sum(nil), nil
}

// Normalize builds the canonical tuple "last|dob|id4|zip": the last name case-folded with
// accents, spaces and punctuation removed; the date as YYYY-MM-DD; the last four digits of
// the SSN (or, failing that, of the phone number) prefixed with its kind; the first five
// digits of the postal code. Two records of one person written differently by two systems
// (e.g. "O'Brien" and "OBRIEN", "123-45-6789" and "6789") give the same tuple.
func Normalize(f Fields) (string, error) {
	last := foldName(f.LastName)
	if last == "" {
		return "", errors.New("last_name is required")
	}
	var dob string
	if f.DateOfBirth != "" {
		d, err := time.Parse(time.DateOnly, strings.TrimSpace(f.DateOfBirth))
		if err != nil {
			return "", errors.New("date_of_birth must be YYYY-MM-DD")
		}
		dob = d.Format(time.DateOnly)
	}
	var id4 string
	switch {
	case f.SSN != "":
		d := digits(f.SSN)
		if len(d) != 4 && len(d) != 9 {
			return "", errors.New("ssn must be 9 digits or the last 4 digits")
		}
		id4 = "ssn:" + d[len(d)-4:]
	case f.Phone != "":
		d := digits(f.Phone)
		if len(d) < 7 {
			return "", errors.New("phone must have at least 7 digits")
		}
		id4 = "tel:" + d[len(d)-4:]
	default:
		return "", errors.New("either ssn or phone is required")
	}
	zip := digits(f.PostalCode)
	if len(zip) > 5 {
		zip = zip[:5]
	}
	return last + "|" + dob + "|" + id4 + "|" + zip, nil
}

func foldName(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r): // accents
		case unicode.IsLetter(r):
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
