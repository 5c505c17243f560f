package codes

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks Parse against a naive reference: the same input must be
// accepted or rejected the same way, an accepted code must be the normalised
// input, and it must survive a round trip through both of its string forms.
func FuzzParse(f *testing.F) {
	for _, tc := range knownVectors {
		f.Add(tc.code)
		f.Add(strings.ToLower(tc.code))
	}
	for _, s := range []string{
		"", "-", " ", "0000-0000-0000-0000", "OOOO-OOOO-OOOO-OOLY",
		" 7m3k\tx9q2\u00a0vrt5-n8hh\n", "0Z00-0000-0000-0001",
		"0123-4567-89AB-CDEU", "0123-4567-89AB-CDE😀", "0123-4567-89AB-CDEZ0",
		"0ı23-4567-89AB-CDEZ", "\xff\xfe", strings.Repeat("-", 40),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		c, err := Parse(input)
		want, wantErr := refParse(input)
		if err != wantErr {
			t.Fatalf("Parse(%q) error = %v, reference says %v", input, err, wantErr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) error %v does not match ErrMalformed", input, err)
			}
			if !c.IsZero() {
				t.Fatalf("Parse(%q) returned %v with an error", input, c)
			}
			return
		}
		compact := c.Compact()
		if compact != want {
			t.Fatalf("Parse(%q) = %q, reference normalises to %q", input, compact, want)
		}
		if len(compact) != codeLen || strings.Trim(compact, Alphabet) != "" || !refValid(compact) {
			t.Fatalf("Parse(%q) accepted a malformed code %q", input, compact)
		}
		display := c.String()
		if len(display) != 19 || display[4] != '-' || display[9] != '-' || display[14] != '-' ||
			strings.ReplaceAll(display, "-", "") != compact {
			t.Fatalf("String() = %q does not display %q", display, compact)
		}
		for _, form := range []string{display, compact, strings.ToLower(display)} {
			again, err := Parse(form)
			if err != nil || again != c {
				t.Fatalf("Parse(%q) = %v, %v; want %v", form, again, err, c)
			}
		}
	})
}

// refParse is Parse written the slow, obvious way, with the same
// first-problem-wins order: an invalid character or a seventeenth symbol
// ends the scan.
func refParse(input string) (string, error) {
	var b strings.Builder
	for _, r := range input {
		norm := refNormalise(string(r))
		switch {
		case norm == "":
			continue
		case len(norm) != 1 || norm[0] >= utf8.RuneSelf || !strings.Contains(Alphabet, norm) || r == utf8.RuneError:
			return "", ErrCharacter
		case b.Len() == codeLen:
			return "", ErrLength
		}
		b.WriteString(norm)
	}
	if b.Len() != codeLen {
		return "", ErrLength
	}
	if !refValid(b.String()) {
		return "", ErrCheckSymbol
	}
	return b.String(), nil
}

func BenchmarkParse(b *testing.B) {
	benchmarks := []struct{ name, input string }{
		{"display", "7M3K-X9Q2-VRT5-N8HH"},
		{"messy", "  7m3k x9q2\tvrt5-n8hh\u00a0 "},
		{"bad check", "7M3K-X9Q2-VRT5-N8HZ"},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Parse(bm.input)
			}
		})
	}
}
