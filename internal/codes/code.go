package codes

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// Alphabet is Crockford's base32 alphabet. A symbol's code point in the Luhn
// mod 32 check is its position in this string.
const Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

const (
	// radix is the N of Luhn mod N.
	radix = len(Alphabet)
	// payloadLen symbols carry 5 bits each: 75 random bits.
	payloadLen = 15
	// codeLen is the payload plus the check symbol.
	codeLen = payloadLen + 1
	// groupLen is the size of the hyphen-separated groups in the display form.
	groupLen = 4
	// deriveDomain separates Derive's HMAC inputs from any other use of a
	// batch secret; bump the version if the derivation ever changes.
	deriveDomain = "enroll/code/v1"
)

// ErrMalformed matches, through errors.Is, every error that means the user
// typed something that is not a valid code: ErrLength, ErrCharacter and
// ErrCheckSymbol. Callers that only need "bad code, ask again" test for it.
var ErrMalformed = errors.New("codes: this is not a valid enrollment code; check the code and type it again")

// The sentinels are returned as they are, never wrapped with details, so that
// no part of a (possibly secret) code can end up in a message or a log and so
// that Parse does not allocate on failure.
var (
	// ErrLength means the input does not have 16 symbols once hyphens and
	// whitespace are removed.
	ErrLength error = &malformedError{"codes: an enrollment code has 16 letters and digits; check for missing or extra characters", ErrMalformed}
	// ErrCharacter means the input contains a character that cannot appear
	// in a code.
	ErrCharacter error = &malformedError{"codes: an enrollment code uses only digits and the letters A to Z except U; check for mistyped characters", ErrMalformed}
	// ErrCheckSymbol means every symbol is valid but the last one does not
	// match the others, which is what a mistyped or swapped symbol looks like.
	ErrCheckSymbol error = &malformedError{"codes: this enrollment code does not check out; look for a mistyped symbol or two swapped neighbours", ErrMalformed}

	// errPayloadLength is FromPayload's length error; it still matches
	// ErrLength, but says 15 because the caller supplies no check symbol.
	errPayloadLength error = &malformedError{"codes: a code payload has 15 letters and digits; check for missing or extra characters", ErrLength}
)

// malformedError gives each input error its own identity and message while
// it still matches its parent, and through it ErrMalformed.
type malformedError struct {
	msg    string
	parent error
}

func (e *malformedError) Error() string { return e.msg }
func (e *malformedError) Unwrap() error { return e.parent }

// decode maps an input byte to its code point, or -1 if the byte is not a
// symbol. It folds case and reads I, L and O as 1, 1 and 0, so normalisation
// costs one table lookup per byte.
var decode = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for v := range len(Alphabet) {
		c := Alphabet[v]
		t[c] = int8(v)
		if 'A' <= c && c <= 'Z' {
			t[c+'a'-'A'] = int8(v)
		}
	}
	for _, c := range "IiLl" {
		t[c] = 1
	}
	for _, c := range "Oo" {
		t[c] = 0
	}
	return t
}()

// Code is a well-formed enrollment code. The zero value is not a code; IsZero
// reports it. Codes are comparable with ==.
type Code struct {
	// sym holds the 16 normalised symbols as ASCII, not code points, so
	// that the zero value cannot be mistaken for the valid all-zeros code.
	sym [codeLen]byte
}

// Parse normalises input and checks that it is a valid code. Case, hyphens
// and whitespace are ignored, and I, L and O are read as 1, 1 and 0. Input is
// scanned left to right and the first problem found is reported: a character
// outside the alphabet gives ErrCharacter, a seventeenth symbol or too few
// symbols give ErrLength, and a wrong check symbol gives ErrCheckSymbol.
//
// Parse does not allocate; it sits on the redemption hot path.
func Parse(input string) (Code, error) {
	var c Code
	var vals [codeLen]byte
	n := 0
	for _, r := range input {
		if r < utf8.RuneSelf {
			if v := decode[r]; v >= 0 {
				if n == codeLen {
					return Code{}, ErrLength
				}
				vals[n] = byte(v)
				n++
				continue
			}
			if r == '-' || unicode.IsSpace(r) {
				continue
			}
			return Code{}, ErrCharacter
		}
		// Pasted codes often carry non-breaking or other Unicode spaces.
		// Non-ASCII letters are not folded: some upper-case to ASCII
		// (dotless ı to I), which would make odd input silently valid.
		if unicode.IsSpace(r) {
			continue
		}
		return Code{}, ErrCharacter
	}
	if n != codeLen {
		return Code{}, ErrLength
	}
	if checkValue(vals[:payloadLen]) != vals[payloadLen] {
		return Code{}, ErrCheckSymbol
	}
	for i, v := range vals {
		c.sym[i] = Alphabet[v]
	}
	return c, nil
}

// checkValue is the Luhn mod N check code point for a payload of code points.
func checkValue(payload []byte) byte {
	sum := 0
	factor := 2
	for i := len(payload) - 1; i >= 0; i-- {
		addend := factor * int(payload[i])
		sum += addend/radix + addend%radix
		factor = 3 - factor
	}
	return byte((radix - sum%radix) % radix)
}

// fromValues builds a code from 15 payload code points by appending the
// check symbol.
func fromValues(payload *[payloadLen]byte) Code {
	var c Code
	for i, v := range payload {
		c.sym[i] = Alphabet[v]
	}
	c.sym[payloadLen] = Alphabet[checkValue(payload[:])]
	return c
}

// String returns the display form XXXX-XXXX-XXXX-XXXX, or "" for the zero
// Code.
func (c Code) String() string {
	if c.IsZero() {
		return ""
	}
	var b [codeLen + codeLen/groupLen - 1]byte
	j := 0
	for i, s := range c.sym {
		if i > 0 && i%groupLen == 0 {
			b[j] = '-'
			j++
		}
		b[j] = s
		j++
	}
	return string(b[:])
}

// Compact returns the 16 symbols without hyphens, or "" for the zero Code.
// This is the canonical form that Keyring hashes, so it must never change.
func (c Code) Compact() string {
	if c.IsZero() {
		return ""
	}
	return string(c.sym[:])
}

// IsZero reports whether c is the zero Code rather than a parsed or generated
// one.
func (c Code) IsZero() bool { return c == Code{} }

// FromPayload appends the check symbol to a 15-symbol payload. The payload is
// normalised like Parse input. It is meant for tests and tooling; production
// codes come from Generate or Derive.
func FromPayload(payload string) (Code, error) {
	var vals [payloadLen]byte
	n := 0
	for _, r := range payload {
		v := int8(-1)
		if r < utf8.RuneSelf {
			v = decode[r]
		}
		switch {
		case v >= 0:
			if n == payloadLen {
				return Code{}, errPayloadLength
			}
			vals[n] = byte(v)
			n++
		case r == '-' || unicode.IsSpace(r):
		default:
			return Code{}, ErrCharacter
		}
	}
	if n != payloadLen {
		return Code{}, errPayloadLength
	}
	return fromValues(&vals), nil
}

// randomBytes is how many bytes hold the 75 payload bits; the last 5 bits
// read are discarded.
const randomBytes = (payloadLen*5 + 7) / 8

// Generate makes a code from 75 random bits read from r. Use crypto/rand.Reader
// in production; other readers are for tests.
func Generate(r io.Reader) (Code, error) {
	var b [randomBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Code{}, fmt.Errorf("codes: reading randomness: %w", err)
	}
	return fromBits(b[:]), nil
}

// Derive returns the code for one subject of a batch: the first 75 bits of
// HMAC-SHA256(batchSecret, "enroll/code/v1" || subjectID || attempt), both
// integers big-endian, as 15 symbols plus the check symbol. The same inputs
// always give the same code, which is what lets the mail-house export
// regenerate a batch instead of anyone storing plaintext codes. If a code
// collides with one already issued, the caller retries with attempt+1; the
// attempt that was used must be recorded to re-derive the same code.
//
// Derive panics if batchSecret is shorter than 32 bytes: with a short or empty
// secret the codes would be guessable, and that is a programming error that
// must not reach a mailing.
func Derive(batchSecret []byte, subjectID int64, attempt uint32) Code {
	// Derive cannot return an error, and a short or empty secret would
	// silently make guessable codes.
	if len(batchSecret) < BatchSecretSize {
		panic("codes: Derive needs a batch secret of at least 32 bytes (see NewBatchSecret)")
	}
	var msg [len(deriveDomain) + 8 + 4]byte
	n := copy(msg[:], deriveDomain)
	binary.BigEndian.PutUint64(msg[n:], uint64(subjectID))
	binary.BigEndian.PutUint32(msg[n+8:], attempt)
	mac := hmac.New(sha256.New, batchSecret)
	mac.Write(msg[:])
	return fromBits(mac.Sum(nil))
}

// fromBits turns the first 75 bits of b, most significant bit first, into a
// code. b must hold at least randomBytes bytes.
func fromBits(b []byte) Code {
	var vals [payloadLen]byte
	for i := range vals {
		bit := 5 * i
		// A 5-bit group spans at most two bytes; the last group starts
		// at bit 70, so b[bit/8+1] is at most b[9].
		w := uint16(b[bit/8])<<8 | uint16(b[bit/8+1])
		vals[i] = byte(w>>(16-5-bit%8)) & 0x1f
	}
	return fromValues(&vals)
}
