package codes

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// The error-detection claims of Luhn mod 32, tested through Parse rather than
// through checkValue so that normalisation and the check comparison are
// covered too.
//
// Why exactly one transposition escapes: neighbours always carry weights 2
// and 1, so swapping a and b changes the sum by (g(a)-a) - (g(b)-b), where
// g(v) = 2v for v < 16 and 2v-31 for v >= 16. Mod 32, g(v)-v is v for v < 16
// and v+1 for v >= 16, which takes every value once except 0, reached by both
// v = 0 and v = 31. So "0Z" and "Z0" are the only pair that cannot be told
// apart, wherever they sit, the check symbol included.

// undetectedPair is the one adjacent transposition Luhn mod 32 misses.
var undetectedPair = [2]byte{'0', 'Z'}

func isUndetectedPair(a, b byte) bool {
	return (a == undetectedPair[0] && b == undetectedPair[1]) ||
		(a == undetectedPair[1] && b == undetectedPair[0])
}

// testPayloads returns payloads as code points: structured edge cases plus
// seeded random ones, fewer under -short.
func testPayloads(t *testing.T) [][payloadLen]byte {
	t.Helper()
	var out [][payloadLen]byte
	for v := range byte(radix) {
		var p [payloadLen]byte
		for i := range p {
			p[i] = v
		}
		out = append(out, p)
	}
	for _, tc := range knownVectors {
		c, err := Parse(tc.code)
		if err != nil {
			t.Fatalf("vector %s: %v", tc.code, err)
		}
		var p [payloadLen]byte
		for i := range p {
			p[i] = decodeSymbol(t, c.sym[i])
		}
		out = append(out, p)
	}
	n := 3000
	if testing.Short() {
		n = 300
	}
	rng := rand.New(rand.NewPCG(0x5eed, 0xc0de))
	for range n {
		var p [payloadLen]byte
		for i := range p {
			p[i] = byte(rng.IntN(radix))
		}
		out = append(out, p)
	}
	return out
}

func decodeSymbol(t *testing.T, s byte) byte {
	t.Helper()
	for v := range len(Alphabet) {
		if Alphabet[v] == s {
			return byte(v)
		}
	}
	t.Fatalf("symbol %q not in alphabet", s)
	return 0
}

func TestEverySingleSubstitutionIsDetected(t *testing.T) {
	t.Parallel()
	for _, p := range testPayloads(t) {
		code := fromValues(&p).Compact()
		for pos := range codeLen {
			for v := range len(Alphabet) {
				if Alphabet[v] == code[pos] {
					continue
				}
				mutated := []byte(code)
				mutated[pos] = Alphabet[v]
				if _, err := Parse(string(mutated)); !errors.Is(err, ErrCheckSymbol) {
					t.Fatalf("%s -> %s (position %d): Parse error = %v, want ErrCheckSymbol", code, mutated, pos+1, err)
				}
			}
		}
	}
}

func TestAdjacentTranspositionsAreDetected(t *testing.T) {
	t.Parallel()
	for _, p := range testPayloads(t) {
		checkTranspositions(t, fromValues(&p))
	}
}

// checkTranspositions swaps every pair of different neighbours in c and
// requires Parse to reject the result, except for the 0/Z pair, which it
// requires Parse to accept: that exception is a property of the algorithm,
// and the test should fail if it ever stops holding as much as if another
// swap slipped through.
func checkTranspositions(t *testing.T, c Code) (undetected int) {
	t.Helper()
	code := c.Compact()
	for pos := range codeLen - 1 {
		a, b := code[pos], code[pos+1]
		if a == b {
			continue
		}
		swapped := []byte(code)
		swapped[pos], swapped[pos+1] = b, a
		got, err := Parse(string(swapped))
		if isUndetectedPair(a, b) {
			if err != nil || got.Compact() != string(swapped) {
				t.Fatalf("%s -> %s (positions %d,%d): expected the known 0/Z blind spot, got %v", code, swapped, pos+1, pos+2, err)
			}
			undetected++
			continue
		}
		if !errors.Is(err, ErrCheckSymbol) {
			t.Fatalf("%s -> %s (positions %d,%d): Parse error = %v, want ErrCheckSymbol", code, swapped, pos+1, pos+2, err)
		}
	}
	return undetected
}

// TestTranspositionBlindSpotIsExactlyZeroZ enumerates every ordered pair of
// different symbols at every adjacent position, including the payload/check
// boundary, swaps them, and collects the pairs whose swap Parse accepts. It
// assumes nothing about the answer; the set it finds must be {0,Z}.
func TestTranspositionBlindSpotIsExactlyZeroZ(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	backgrounds := 6
	if testing.Short() {
		backgrounds = 2
	}
	for range backgrounds {
		var base [payloadLen]byte
		for i := range base {
			base[i] = byte(rng.IntN(radix))
		}
		missed := make(map[[2]byte]int)
		for pos := range codeLen - 1 {
			for a := range byte(radix) {
				for b := range byte(radix) {
					if a == b {
						continue
					}
					c, ok := codeWithPair(base, pos, a, b)
					if !ok {
						t.Fatalf("cannot build a code with %c%c at position %d", Alphabet[a], Alphabet[b], pos+1)
					}
					swapped := []byte(c.Compact())
					swapped[pos], swapped[pos+1] = swapped[pos+1], swapped[pos]
					if _, err := Parse(string(swapped)); err == nil {
						missed[[2]byte{Alphabet[min(a, b)], Alphabet[max(a, b)]}]++
					} else if !errors.Is(err, ErrCheckSymbol) {
						t.Fatalf("%s: Parse error = %v, want nil or ErrCheckSymbol", swapped, err)
					}
				}
			}
		}
		// Both orders (0Z and Z0) at all 15 adjacent positions.
		want := map[[2]byte]int{undetectedPair: 2 * (codeLen - 1)}
		if len(missed) != len(want) || missed[undetectedPair] != want[undetectedPair] {
			t.Fatalf("undetected transpositions (pair: count) = %v, want %v", fmtPairs(missed), fmtPairs(want))
		}
	}
}

func fmtPairs(m map[[2]byte]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[string(k[:])] = v
	}
	return out
}

// codeWithPair returns a code equal to base except that symbols pos and pos+1
// are a and b. When pos+1 is the check symbol, it steers the check to b by
// varying the first payload symbol, which works because a single substitution
// moves the check through every value.
func codeWithPair(base [payloadLen]byte, pos int, a, b byte) (Code, bool) {
	p := base
	p[pos] = a
	if pos+1 < payloadLen {
		p[pos+1] = b
		return fromValues(&p), true
	}
	for v := range byte(radix) {
		p[0] = v
		if checkValue(p[:]) == b {
			return fromValues(&p), true
		}
	}
	return Code{}, false
}

func TestZeroZSwapExample(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, code string
		pos        int // 1-based position of the first swapped symbol
	}{
		{"inside the payload", "0Z00-0000-0000-0001", 1},
		{"across payload and check", "G000-0000-0000-00Z0", 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse(tc.code)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.code, err)
			}
			swapped := []byte(c.Compact())
			i := tc.pos - 1
			swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
			if _, err := Parse(string(swapped)); err != nil {
				t.Errorf("Parse(%s) = %v; Luhn mod 32 cannot see this swap, so it should pass", swapped, err)
			}
		})
	}
}
