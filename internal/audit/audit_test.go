package audit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func chain(n int) []Entry {
	out := make([]Entry, n)
	prev := GenesisHash
	for i := range out {
		e := Entry{Seq: int64(i + 1), Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Actor: "clients/admin", Role: "ADMIN",
			Action: "/enroll.v1.AdminService/RevokeCode", Resource: fmt.Sprintf("incidents/x/subjects/S-%d", i), RequestID: "r", Outcome: "OK", PrevHash: prev}
		e.Hash = e.ComputeHash()
		prev = e.Hash
		out[i] = e
	}
	return out
}

func export(t *testing.T, es []Entry) string {
	t.Helper()
	var b bytes.Buffer
	for i := range es {
		l, err := es[i].MarshalLine()
		if err != nil {
			t.Fatal(err)
		}
		b.Write(l)
	}
	return b.String()
}

func TestVerify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tamper   func([]Entry) []Entry
		wantLine int
		reason   string
	}{
		{"untouched", func(es []Entry) []Entry { return es }, 0, ""},
		{"field changed", func(es []Entry) []Entry { es[4].Resource = "incidents/x/subjects/OTHER"; return es }, 5, "altered"},
		{"field changed and rehashed", func(es []Entry) []Entry { es[4].Outcome = "NotFound"; es[4].Hash = es[4].ComputeHash(); return es }, 6, "chain broken"},
		{"entry deleted", func(es []Entry) []Entry { return append(es[:3], es[4:]...) }, 4, "missing"},
		{"two swapped", func(es []Entry) []Entry { es[2], es[3] = es[3], es[2]; return es }, 3, "missing"},
		{"forged entry appended", func(es []Entry) []Entry {
			f := Entry{Seq: 11, Actor: "mallory", PrevHash: "00", Outcome: "OK"}
			f.Hash = f.ComputeHash()
			return append(es, f)
		}, 11, "chain broken"},
		{"entry inserted", func(es []Entry) []Entry {
			f := es[5]
			f.Actor = "mallory"
			f.Hash = f.ComputeHash()
			return append(es[:6], append([]Entry{f}, es[6:]...)...)
		}, 7, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n, err := Verify(strings.NewReader(export(t, tc.tamper(chain(10)))))
			if tc.wantLine == 0 {
				if err != nil || n != 10 {
					t.Fatalf("untouched chain: n=%d err=%v", n, err)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("tampering not detected: n=%d err=%v", n, err)
			}
			if p.Line != tc.wantLine || !strings.Contains(p.Reason, tc.reason) {
				t.Fatalf("problem %v, want line %d mentioning %q", p, tc.wantLine, tc.reason)
			}
		})
	}
}
