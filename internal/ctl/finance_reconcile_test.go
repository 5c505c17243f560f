package ctl_test

import (
	"bytes"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// invoiceWorld is alpha's October 2026: 30 members activated in September, M-0003 cancelled
// before October; an enrollment never activated and one activated in November; and one
// beta member.
type invoiceWorld struct {
	*books
	members             map[int]string // member number → enrollment name
	pending, late, beta string
}

func newInvoiceWorld(t *testing.T, engine gormtest.Engine) *invoiceWorld {
	t.Helper()
	b := newBooks(t, engine.Config(t), date(2026, 9, 1, 0, 0, 0), "alpha", "beta")
	w := &invoiceWorld{books: b, members: map[int]string{}}
	refs := []string{"pending", "late"}
	for i := 1; i <= 30; i++ {
		refs = append(refs, fmt.Sprintf("a%02d", i))
	}
	b.issue("alpha", refs...)
	b.issue("beta", "b01")
	for i := 1; i <= 30; i++ {
		w.members[i] = b.enroll("alpha", fmt.Sprintf("a%02d", i), member(i), date(2026, 9, 5, 9, i, 0))
	}
	w.beta = b.enroll("beta", "b01", "B-0001", date(2026, 9, 6, 9, 0, 0))
	w.pending = b.redeem("pending", date(2026, 9, 10, 9, 0, 0))
	b.cancel("alpha", w.members[3], date(2026, 9, 20, 9, 0, 0))
	w.late = b.enroll("alpha", "late", "M-LATE", date(2026, 11, 1, 0, 0, 0))
	b.s.Clock.Set(date(2026, 11, 2, 0, 0, 0))
	return w
}

func member(i int) string { return fmt.Sprintf("M-%04d", i) }

// billed is one billed thing of a generated invoice and what reconciling it must say.
type billed struct {
	member, enrollment string // how the line can name it
	reason             string // "" if billable
	dupOf              int    // for DUPLICATE, the index of the first
}

// plantedInvoice is alpha's members but M-0007, with four planted lines: an unknown member,
// M-0003 (cancelled in September), a second M-0005, and beta's member.
func (w *invoiceWorld) plantedInvoice() []billed {
	var out []billed
	first := map[int]int{}
	for i := 1; i <= 30; i++ {
		if i == 7 {
			continue // billable, not billed
		}
		b := billed{member: member(i), enrollment: w.members[i]}
		if i == 3 {
			b.reason = "ENDED_BEFORE_MONTH"
		}
		first[i] = len(out)
		out = append(out, b)
		switch i {
		case 2:
			out = append(out, billed{member: "M-9999", enrollment: "enrollments/nosuchenrollment", reason: "UNKNOWN"})
		case 20:
			out = append(out, billed{member: member(5), enrollment: w.members[5], reason: "DUPLICATE", dupOf: first[5]})
		case 27:
			out = append(out, billed{member: "B-0001", enrollment: w.beta, reason: "OTHER_PARTNER"})
		}
	}
	return out
}

// invoiceFormats render an invoice as a vendor might send it, and say which value of a line
// the answer names (the CLI bills the enrollment column when set, else member_id).
var invoiceFormats = []struct {
	name, head string
	render     func(i int, b billed) string
	value      func(b billed) string
}{
	{"one member id per line, other partner by enrollment name", "", func(_ int, b billed) string {
		return plainValue(b)
	}, plainValue},
	{"CSV with a member_id column", "invoice_no,member_id,amount", func(i int, b billed) string {
		return fmt.Sprintf("INV-%d,%s,9.99", i, b.member)
	}, func(b billed) string { return b.member }},
	{"CSV with an enrollment column, bare ids and names mixed", "enrollment,member_id", func(i int, b billed) string {
		switch {
		case b.reason == "DUPLICATE":
			return "," + b.member // the duplicate names the member, the first line its enrollment
		case i%2 == 0:
			return strings.TrimPrefix(b.enrollment, "enrollments/") + ","
		}
		return b.enrollment + "," + b.member
	}, func(b billed) string {
		if b.reason == "DUPLICATE" {
			return b.member
		}
		return b.enrollment
	}},
}

func plainValue(b billed) string {
	if b.reason == "OTHER_PARTNER" {
		return b.enrollment
	}
	return b.member
}

var (
	billedLine   = regexp.MustCompile(`^  line (\d+): ([A-Z_]+) ("(?:[^"\\]|\\.)*")(?: (enrollments/\S+))?(?: \(first billed on line (\d+)\))?$`)
	unbilledLine = regexp.MustCompile(`^  (enrollments/\S+) member ("(?:[^"\\]|\\.)*")$`)
)

// reconciled is enrollctl reconcile's output, parsed.
type reconciled struct {
	totals      map[string]int64
	billed      map[int64]string // line → "REASON value [first line]"
	notBilled   []string
	listedLines int
}

func parseReconcile(t *testing.T, out string) reconciled {
	t.Helper()
	r := reconciled{totals: map[string]int64{}, billed: map[int64]string{}}
	for _, k := range []string{"invoice lines", "billable here", "matched", "billed not billable", "billable not billed"} {
		r.totals[k] = countLine(t, out, k)
	}
	for _, l := range strings.Split(out, "\n") {
		if m := billedLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			v, err := strconv.Unquote(m[3])
			if err != nil {
				t.Fatalf("value in %q: %v", l, err)
			}
			r.billed[n] = strings.TrimSpace(m[2] + " " + v + " " + m[5])
			r.listedLines++
		} else if m := unbilledLine.FindStringSubmatch(l); m != nil {
			r.notBilled = append(r.notBilled, m[1])
		}
	}
	return r
}

// TestReconcile streams generated invoices with planted differences through enrollctl
// reconcile: it must report exactly those, with their lines and reasons, and nothing else.
func TestReconcile(t *testing.T) {
	t.Parallel()
	for _, engine := range gormtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Parallel()
			w := newInvoiceWorld(t, engine)
			invoice := w.plantedInvoice()
			for _, f := range invoiceFormats {
				t.Run(f.name, func(t *testing.T) {
					t.Parallel()
					var file strings.Builder
					header := 0
					if f.head != "" {
						file.WriteString(f.head + "\n")
						header = 1
					}
					want := map[int64]string{}
					for i, b := range invoice {
						file.WriteString(f.render(i, b) + "\n")
						if b.reason == "" {
							continue
						}
						desc := b.reason + " " + f.value(b)
						if b.reason == "DUPLICATE" {
							desc += " " + strconv.Itoa(b.dupOf+1+header)
						}
						want[int64(i+1+header)] = desc
					}
					path := writeFile(t, "invoice.csv", []byte(file.String()))
					out, stderr, err := run(t, w.s, "reconcile", "--partner", "alpha", "--month", "2026-10", "--invoice", path)
					if err == nil || !strings.Contains(err.Error(), "4 billed line(s) not billable, 1 billable enrollment(s) not billed") {
						t.Fatalf("reconcile: err = %v, want the differences counted\n%s\n%s", err, out, stderr)
					}
					got := parseReconcile(t, out)
					wantTotals := map[string]int64{"invoice lines": 32, "billable here": 29, "matched": 28, "billed not billable": 4, "billable not billed": 1}
					if !maps.Equal(got.totals, wantTotals) {
						t.Errorf("totals %v, want %v\n%s", got.totals, wantTotals, out)
					}
					if !maps.Equal(got.billed, want) {
						t.Errorf("billed not billable:\n got %v\nwant %v\n%s", got.billed, want, out)
					}
					if !slices.Equal(got.notBilled, []string{w.members[7]}) {
						t.Errorf("billable not billed %v, want [%s] (M-0007)\n%s", got.notBilled, w.members[7], out)
					}
				})
			}

			t.Run("our own export reconciles clean", func(t *testing.T) {
				t.Parallel()
				path := filepath.Join(t.TempDir(), "october.csv")
				if _, stderr, err := run(t, w.s, "billable", "--partner", "alpha", "--month", "2026-10", "-o", path); err != nil {
					t.Fatalf("billable: %v\n%s", err, stderr)
				}
				out, stderr, err := run(t, w.s, "reconcile", "--partner", "alpha", "--month", "2026-10", "--invoice", path)
				if err != nil {
					t.Fatalf("reconcile of the billable export: %v\n%s\n%s", err, out, stderr)
				}
				got := parseReconcile(t, out)
				if got.totals["matched"] != 29 || got.totals["invoice lines"] != 29 || len(got.billed)+len(got.notBilled) != 0 {
					t.Fatalf("clean invoice reconciled as %+v\n%s", got, out)
				}
			})

			t.Run("every reason, lists capped, totals exact", func(t *testing.T) {
				t.Parallel()
				w.everyReason(t)
			})

			t.Run("a large invoice lists 10000 and counts all", func(t *testing.T) {
				t.Parallel()
				var file bytes.Buffer
				for i := range 12000 {
					fmt.Fprintf(&file, "U-%05d\n", i)
				}
				for i := 1; i <= 30; i++ {
					fmt.Fprintf(&file, "%s\n", member(i))
				}
				out, stderr, err := run(t, w.s, "reconcile", "--partner", "alpha", "--month", "2026-10", "--invoice", writeFile(t, "big.txt", file.Bytes()))
				if err == nil {
					t.Fatalf("reconcile: no error for 12001 differences\n%s", stderr)
				}
				got := parseReconcile(t, out)
				want := map[string]int64{"invoice lines": 12030, "billable here": 29, "matched": 29, "billed not billable": 12001, "billable not billed": 0}
				if !maps.Equal(got.totals, want) || got.listedLines != 10000 || !strings.Contains(out, "(10000 of 12001 listed)") {
					t.Fatalf("totals %v (listed %d), want %v, 10000 listed", got.totals, got.listedLines, want)
				}
				if got.billed[1] != "UNKNOWN U-00000" || got.billed[10000] != "UNKNOWN U-09999" {
					t.Fatalf("first listed lines %q %q", got.billed[1], got.billed[10000])
				}
			})

			t.Run("refusals", func(t *testing.T) {
				t.Parallel()
				w.refusals(t)
			})

			t.Run("REST", func(t *testing.T) {
				t.Parallel()
				w.rest(t)
			})
		})
	}
}
