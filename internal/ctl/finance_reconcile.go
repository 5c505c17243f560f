package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
)

const reconcileHelp = `The invoice is either one billed value per line, or a CSV file whose header has a
member_id or an enrollment column (an export of enrollctl billable -o is one). A value is an
enrollment if it is in the enrollment column or reads enrollments/{id}, otherwise the
partner's member id. Blank lines are skipped. The file is streamed to the server, which stages
it in the database: any size runs in flat memory on both sides.

The answer lists the billed lines that are not billable here, each with why (NEVER_ACTIVATED,
ENDED_BEFORE_MONTH, NOT_STARTED, OTHER_PARTNER, UNKNOWN, DUPLICATE), and the billable
enrollments the invoice does not bill; each list stops at --max-differences, the totals are
exact. The exit status is non-zero if there is any difference.`

// invoiceChunk is how many lines go in one message.
const invoiceChunk = 1000

func reconcile(fs *flag.FlagSet) runFunc {
	partner := fs.String("partner", "", "partner id (required)")
	month := fs.String("month", "", "invoiced calendar month, YYYY-MM (UTC; required)")
	invoice := fs.String("invoice", "", "the vendor's invoice file (required; - for standard input)")
	maxDiffs := fs.Int("max-differences", 0, "list at most this many differences of each kind (default and most 10000)")
	return func(ctx context.Context, c *conn) error {
		if *partner == "" || *month == "" || *invoice == "" {
			return errors.New("--partner, --month and --invoice are required")
		}
		var (
			in   io.Reader = os.Stdin
			size int64
		)
		if *invoice != "-" {
			f, err := os.Open(*invoice)
			if err != nil {
				return fmt.Errorf("failed to open the invoice: %w", err)
			}
			defer f.Close()
			if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
				size = st.Size()
			}
			in = f
		}
		resp, err := sendInvoice(ctx, c, in, size, &enrollv1.ReconcileInvoiceRequest{
			Partner: "partners/" + *partner, Month: *month, MaxDifferences: int32(min(max(*maxDiffs, 0), 1<<30)),
		})
		if err != nil {
			return err
		}
		printReconciliation(c.env.Stdout, resp)
		t := resp.GetTotals()
		if t.GetBilledNotBillable() > 0 || t.GetBillableNotBilled() > 0 {
			return fmt.Errorf("the invoice differs from the billable set: %d billed line(s) not billable, %d billable enrollment(s) not billed",
				t.GetBilledNotBillable(), t.GetBillableNotBilled())
		}
		return nil
	}
}

// sendInvoice streams the invoice, a chunk per message, and returns the server's answer.
func sendInvoice(ctx context.Context, c *conn, in io.Reader, size int64, first *enrollv1.ReconcileInvoiceRequest) (*enrollv1.ReconcileInvoiceResponse, error) {
	// The stream is cancelled if reading the file fails, so the server drops what it staged.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The answer is capped to fit the default 4 MiB; the headroom is for a server that lists more.
	stream, err := c.reporting().ReconcileInvoice(ctx, grpc.MaxCallRecvMsgSize(64<<20))
	if err != nil {
		return nil, fmt.Errorf("failed to start the reconciliation: %w", err)
	}
	cr := &countingReader{r: in}
	p := newProgress(c.env.Stderr, "invoice", 0)
	req := first
	var rows int64
	send := func() error {
		if err := stream.Send(req); err != nil {
			// The server's reason comes with the answer.
			if _, rerr := stream.CloseAndRecv(); rerr != nil {
				return fmt.Errorf("reconciliation refused: %w", rerr)
			}
			return fmt.Errorf("failed to send the invoice: %w", err)
		}
		p.updateFile(rows, cr.n, size)
		req = &enrollv1.ReconcileInvoiceRequest{}
		return nil
	}
	var skipped int64
	err = readInvoice(cr, func(l *enrollv1.InvoiceLine) error {
		req.Lines = append(req.Lines, l)
		rows++
		if len(req.Lines) < invoiceChunk {
			return nil
		}
		return send()
	}, func(line int64) {
		if skipped++; skipped <= 10 {
			fmt.Fprintf(c.env.Stderr, "invoice line %d bills nothing (no member_id or enrollment): skipped\n", line)
		}
	})
	if err != nil {
		return nil, err
	}
	if len(req.Lines) > 0 || req == first {
		if err := send(); err != nil {
			return nil, err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("reconciliation failed: %w", err)
	}
	p.doneFile(rows)
	if skipped > 0 {
		fmt.Fprintf(c.env.Stderr, "skipped %d invoice line(s) that bill nothing\n", skipped)
	}
	return resp, nil
}

// readInvoice calls emit for each billed value of the invoice, with its line number, and skip
// for each CSV row that bills nothing.
func readInvoice(r io.Reader, emit func(*enrollv1.InvoiceLine) error, skip func(line int64)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(4096)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("failed to read the invoice: %w", err)
	}
	if first, _, _ := bytes.Cut(head, []byte{'\n'}); csvColumns(first) != nil {
		return readInvoiceCSV(br, emit, skip)
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var line int64
	for sc.Scan() {
		line++
		v := strings.TrimSpace(sc.Text())
		if line == 1 {
			v = strings.TrimPrefix(v, "\ufeff")
		}
		if v == "" {
			continue
		}
		l := &enrollv1.InvoiceLine{Line: line, Value: &enrollv1.InvoiceLine_MemberId{MemberId: v}}
		if strings.HasPrefix(v, "enrollments/") {
			l.Value = &enrollv1.InvoiceLine_Enrollment{Enrollment: v}
		}
		if err := emit(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("failed to read the invoice at line %d: %w", line+1, err)
	}
	return nil
}

// invoiceColumns are the positions of the billed-value columns of a CSV header (-1 if absent).
type invoiceColumns struct{ member, enrollment int }

// csvColumns returns the billed-value columns if header is a CSV header naming one, else nil.
func csvColumns(header []byte) *invoiceColumns {
	rec, err := csv.NewReader(bytes.NewReader(header)).Read()
	if err != nil {
		return nil
	}
	return columnsOf(rec)
}

func columnsOf(header []string) *invoiceColumns {
	cols := &invoiceColumns{member: -1, enrollment: -1}
	for i, h := range header {
		switch strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))) {
		case "member_id":
			cols.member = i
		case "enrollment", "enrollment_id":
			cols.enrollment = i
		}
	}
	if cols.member < 0 && cols.enrollment < 0 {
		return nil
	}
	return cols
}

// readInvoiceCSV reads a CSV invoice: each row bills its enrollment if the column is there
// and set, else its member id; a row with neither (a totals row, say) is skipped.
func readInvoiceCSV(r io.Reader, emit func(*enrollv1.InvoiceLine) error, skip func(line int64)) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("failed to read the invoice header: %w", err)
	}
	cols := columnsOf(header)
	if cols == nil {
		return errors.New("the invoice header names no member_id or enrollment column")
	}
	field := func(rec []string, i int) string {
		if i < 0 || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("failed to read the invoice: %w", err)
		}
		line, _ := cr.FieldPos(0)
		l := &enrollv1.InvoiceLine{Line: int64(line)}
		if v := field(rec, cols.enrollment); v != "" {
			l.Value = &enrollv1.InvoiceLine_Enrollment{Enrollment: v}
		} else if v := field(rec, cols.member); v != "" {
			l.Value = &enrollv1.InvoiceLine_MemberId{MemberId: v}
		} else {
			skip(int64(line))
			continue
		}
		if err := emit(l); err != nil {
			return err
		}
	}
}

// reasonName is a NotBillableReason without its enum prefix.
func reasonName(r enrollv1.NotBillableReason) string {
	return strings.TrimPrefix(r.String(), "NOT_BILLABLE_REASON_")
}

func printReconciliation(w io.Writer, resp *enrollv1.ReconcileInvoiceResponse) {
	t := resp.GetTotals()
	fmt.Fprintf(w, "invoice: %s %s\n", resp.GetPartner(), resp.GetMonth())
	fmt.Fprintf(w, "invoice lines: %d\nbillable here: %d\nmatched: %d\nbilled not billable: %d\n",
		t.GetInvoiceLines(), t.GetBillable(), t.GetMatched(), t.GetBilledNotBillable())
	for _, r := range t.GetByReason() {
		fmt.Fprintf(w, "  %s: %d\n", reasonName(r.GetReason()), r.GetLines())
	}
	fmt.Fprintf(w, "billable not billed: %d\n", t.GetBillableNotBilled())
	if d := resp.GetBilledNotBillable(); len(d) > 0 {
		fmt.Fprintf(w, "\nbilled but not billable here (%d of %d listed):\n", len(d), t.GetBilledNotBillable())
		for _, b := range d {
			fmt.Fprintf(w, "  line %d: %s %q", b.GetLine(), reasonName(b.GetReason()), b.GetValue())
			if b.GetEnrollment() != "" && b.GetEnrollment() != b.GetValue() {
				fmt.Fprintf(w, " %s", b.GetEnrollment())
			}
			if b.GetFirstLine() > 0 {
				fmt.Fprintf(w, " (first billed on line %d)", b.GetFirstLine())
			}
			fmt.Fprintln(w)
		}
	}
	if d := resp.GetBillableNotBilled(); len(d) > 0 {
		fmt.Fprintf(w, "\nbillable but not billed (%d of %d listed):\n", len(d), t.GetBillableNotBilled())
		for _, b := range d {
			fmt.Fprintf(w, "  %s member %q\n", b.GetEnrollment(), b.GetMemberId())
		}
	}
}
