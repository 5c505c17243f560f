package codes

import (
	"errors"
	"strings"
	"testing"
	"unicode"
)

// knownVectors were supplied with the spec; each was also checked by hand
// against the Luhn mod 32 definition (the payload sums are noted).
var knownVectors = []struct {
	name, code string
}{
	{"zeros then one", "0000-0000-0000-001Y"}, // sum 2, check 30
	{"ascending", "0123-4567-89AB-CDEZ"},      // sum 161, check 31
	{"letters", "ABCD-EFGH-JKMN-PQRM"},        // sum 236, check 20
	{"all Z", "ZZZZ-ZZZZ-ZZZZ-ZZZF"},          // sum 465, check 15
	{"mixed", "7M3K-X9Q2-VRT5-N8HH"},          // sum 207, check 17
}

func TestParseKnownVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range knownVectors {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse(tc.code)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := c.String(); got != tc.code {
				t.Errorf("String() = %q, want %q", got, tc.code)
			}
			if got, want := c.Compact(), strings.ReplaceAll(tc.code, "-", ""); got != want {
				t.Errorf("Compact() = %q, want %q", got, want)
			}
			// The check symbol must come from the payload alone.
			fromPayload, err := FromPayload(tc.code[:len(tc.code)-1])
			if err != nil {
				t.Fatalf("FromPayload: %v", err)
			}
			if fromPayload != c {
				t.Errorf("FromPayload = %v, want %v", fromPayload, c)
			}
			if !refValid(c.Compact()) {
				t.Errorf("reference Luhn mod 32 rejects %q", tc.code)
			}
		})
	}
}

func TestParseNormalises(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, input, want string
	}{
		{"display form", "0123-4567-89AB-CDEZ", "0123-4567-89AB-CDEZ"},
		{"lower case", "0123-4567-89ab-cdez", "0123-4567-89AB-CDEZ"},
		{"mixed case", "aBcD-eFgH-jKmN-pQrM", "ABCD-EFGH-JKMN-PQRM"},
		{"no hyphens", "0123456789ABCDEZ", "0123-4567-89AB-CDEZ"},
		{"spaces", "0123 4567 89AB CDEZ", "0123-4567-89AB-CDEZ"},
		{"surrounding space", "  0123-4567-89AB-CDEZ \n", "0123-4567-89AB-CDEZ"},
		{"tabs and newlines", "\t0123\t4567\r\n89AB\vCDEZ\f", "0123-4567-89AB-CDEZ"},
		{"odd hyphens", "--01-23--456789ABCDEZ-", "0123-4567-89AB-CDEZ"},
		{"one symbol per group", "0 1 2 3 4 5 6 7 8 9 A B C D E Z", "0123-4567-89AB-CDEZ"},
		{"no-break space", "0123\u00a04567\u00a089AB\u00a0CDEZ", "0123-4567-89AB-CDEZ"},
		{"ideographic space", "0123\u30004567\u300089AB\u3000CDEZ", "0123-4567-89AB-CDEZ"},
		{"O and I for 0 and 1", "OI23-4567-89AB-CDEZ", "0123-4567-89AB-CDEZ"},
		{"o and l for 0 and 1", "ol23-4567-89AB-CDEZ", "0123-4567-89AB-CDEZ"},
		{"O and L upper", "OOOO-OOOO-OOOO-OOLY", "0000-0000-0000-001Y"},
		{"i lower", "0000-0000-0000-00iy", "0000-0000-0000-001Y"},
		{"everything at once", " oOoO\t0000 -0000-\u00a00OLy ", "0000-0000-0000-001Y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse(tc.input)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.input, err)
			}
			if got := c.String(); got != tc.want {
				t.Errorf("Parse(%q) = %q, want %q", tc.input, got, tc.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, input string
		want        error
	}{
		{"empty", "", ErrLength},
		{"only separators", " - \t-", ErrLength},
		{"15 symbols", "0123-4567-89AB-CDE", ErrLength},
		{"17 symbols", "0123-4567-89AB-CDEZ0", ErrLength},
		{"two codes", "0123-4567-89AB-CDEZ 0123-4567-89AB-CDEZ", ErrLength},
		{"U", "0123-4567-89AB-CDEU", ErrCharacter},
		{"lower u", "u123-4567-89AB-CDEZ", ErrCharacter},
		{"asterisk", "0123-4567-89AB-CD*Z", ErrCharacter},
		{"emoji", "0123-4567-89AB-CDE😀", ErrCharacter},
		{"underscore separator", "0123_4567_89AB_CDEZ", ErrCharacter},
		{"en dash separator", "0123–4567–89AB–CDEZ", ErrCharacter},
		{"fullwidth digit", "０123-4567-89AB-CDEZ", ErrCharacter},
		{"dotless i", "0ı23-4567-89AB-CDEZ", ErrCharacter},
		{"long s", "0123-4567-89AB-CDEſ", ErrCharacter},
		{"invalid UTF-8", "0123-4567-89AB-CDE\xff", ErrCharacter},
		{"NUL", "0123-4567-89AB-CDE\x00Z", ErrCharacter},
		{"bad character before length", "*0123-4567-89AB-CDE", ErrCharacter},
		{"17th symbol before bad character", "0123-4567-89AB-CDEZ0*", ErrLength},
		{"wrong check symbol", "0123-4567-89AB-CDE0", ErrCheckSymbol},
		{"off-by-one check symbol", "0000-0000-0000-001Z", ErrCheckSymbol},
		{"mistyped payload", "0123-4567-89AB-CDFZ", ErrCheckSymbol},
		{"swapped neighbours", "1023-4567-89AB-CDEZ", ErrCheckSymbol},
	}
	sentinels := []error{ErrLength, ErrCharacter, ErrCheckSymbol}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse(tc.input)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse(%q) error = %v, want %v", tc.input, err, tc.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not match ErrMalformed", err)
			}
			for _, s := range sentinels {
				if s != tc.want && errors.Is(err, s) {
					t.Errorf("error %v also matches %v", err, s)
				}
			}
			if !c.IsZero() {
				t.Errorf("Parse returned non-zero code %v with an error", c)
			}
			assertNoLeak(t, err.Error(), tc.input)
		})
	}
}

// assertNoLeak fails if msg repeats input, raw or normalised, or any five
// consecutive symbols of it: messages are shown to users and logged.
func assertNoLeak(t *testing.T, msg, input string) {
	t.Helper()
	norm := refNormalise(input)
	for _, s := range []string{input, norm} {
		for i := 0; i+5 <= len(s); i++ {
			if strings.Contains(strings.ToUpper(msg), strings.ToUpper(s[i:i+5])) {
				t.Errorf("message %q contains %q from the input", msg, s[i:i+5])
			}
		}
	}
}

// TestParseDoesNotAllocate is not parallel: testing.AllocsPerRun refuses to
// run in parallel tests because other goroutines' allocations would count.
func TestParseDoesNotAllocate(t *testing.T) {
	tests := []struct{ name, input string }{
		{"valid", "7M3K-X9Q2-VRT5-N8HH"},
		{"valid messy", " 7m3k x9q2\tvrt5-n8hh\u00a0"},
		{"bad check", "7M3K-X9Q2-VRT5-N8HZ"},
		{"bad character", "7M3K-X9Q2-VRT5-N8H*"},
		{"too long", "7M3K-X9Q2-VRT5-N8HH-0000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, func() { _, _ = Parse(tc.input) }); n != 0 {
				t.Errorf("Parse allocates %v times per call", n)
			}
		})
	}
}

func TestCodeForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, display, compact string
	}{
		{"all zeros is a valid code", "0000-0000-0000-0000", "0000000000000000"},
		{"vector", "7M3K-X9Q2-VRT5-N8HH", "7M3KX9Q2VRT5N8HH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse(tc.display)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.IsZero() {
				t.Error("parsed code reports IsZero")
			}
			if got := c.String(); got != tc.display {
				t.Errorf("String() = %q, want %q", got, tc.display)
			}
			if got := c.Compact(); got != tc.compact {
				t.Errorf("Compact() = %q, want %q", got, tc.compact)
			}
			for _, form := range []string{c.String(), c.Compact()} {
				again, err := Parse(form)
				if err != nil || again != c {
					t.Errorf("Parse(%q) = %v, %v; want %v", form, again, err, c)
				}
			}
		})
	}
}

func TestZeroCode(t *testing.T) {
	t.Parallel()
	var c Code
	if !c.IsZero() {
		t.Error("zero Code: IsZero() = false")
	}
	if c.String() != "" || c.Compact() != "" {
		t.Errorf("zero Code renders as %q / %q, want empty", c.String(), c.Compact())
	}
}

func TestFromPayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, payload, want string
		err                 error
	}{
		{"plain", "7M3KX9Q2VRT5N8H", "7M3K-X9Q2-VRT5-N8HH", nil},
		{"normalised", "7m3k-x9q2 vrt5-n8h", "7M3K-X9Q2-VRT5-N8HH", nil},
		{"substitutions", "ooooOOOOooooOoL", "0000-0000-0000-001Y", nil},
		{"14 symbols", "7M3KX9Q2VRT5N8", "", ErrLength},
		{"16 symbols", "7M3KX9Q2VRT5N8HH", "", ErrLength},
		{"bad character", "7M3KX9Q2VRT5N8U", "", ErrCharacter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := FromPayload(tc.payload)
			if !errors.Is(err, tc.err) || (tc.err != nil && !errors.Is(err, ErrMalformed)) {
				t.Fatalf("FromPayload(%q) error = %v, want %v", tc.payload, err, tc.err)
			}
			if got := c.String(); got != tc.want {
				t.Errorf("FromPayload(%q) = %q, want %q", tc.payload, got, tc.want)
			}
			if err != nil {
				assertNoLeak(t, err.Error(), tc.payload)
			}
		})
	}
}

// refNormalise is a deliberately naive reimplementation of Parse's
// normalisation, used as an oracle.
func refNormalise(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '-' || unicode.IsSpace(r):
			continue
		case 'a' <= r && r <= 'z':
			r -= 'a' - 'A'
		}
		switch r {
		case 'I', 'L':
			r = '1'
		case 'O':
			r = '0'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// refValid checks a 16-symbol code the way Luhn mod N is usually verified:
// weight the whole code, check symbol included, from the right with 1,2,1,2...
// and require the total to be a multiple of N. Parse instead computes the
// check symbol from the payload, so the two are independent.
func refValid(code string) bool {
	if len(code) != 16 {
		return false
	}
	sum := 0
	for i := 0; i < 16; i++ {
		v := strings.IndexByte(Alphabet, code[15-i])
		if v < 0 {
			return false
		}
		if i%2 == 1 {
			v *= 2
			v = v/32 + v%32
		}
		sum += v
	}
	return sum%32 == 0
}
