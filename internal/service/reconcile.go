package service

import (
	"cmp"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
)

const (
	// maxDifferences caps each list of a ReconcileInvoice answer (the totals stay exact): two
	// full lists of the longest values (about 180 bytes an entry) stay under a gRPC client's
	// default 4 MiB receive limit.
	maxDifferences = 10000
	// maxInvoiceChunk bounds the lines of one request message.
	maxInvoiceChunk = 10000
	// stageChunk is how many lines are staged per store call: small messages are gathered,
	// so a client sending a line per message costs no more than one sending thousands.
	stageChunk = 5000
	// maxInvoiceValue bounds a billed value: the longest member id, and the staging column.
	maxInvoiceValue = 128
	// staleRunAge is older than any reconciliation lasts: a run this old was left behind by a
	// crash, and the next call deletes its lines.
	staleRunAge = 24 * time.Hour
)

// ReconcileInvoice compares a partner's invoice with the billable set of a month. The lines
// are staged in the database as they arrive and compared there, so the server's memory does
// not grow with the invoice; the staged lines are deleted however the call ends.
func (s *ReportingServer) ReconcileInvoice(stream enrollv1.ReportingService_ReconcileInvoiceServer) error {
	ctx := stream.Context()
	r := &reconcileRun{s: s}
	defer r.cleanup(ctx)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := r.accept(ctx, req); err != nil {
			return err
		}
	}
	if r.runID == "" {
		return enrollment.Invalidf("send at least one message with partner (partners/{partner}) and month (YYYY-MM)")
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	resp, err := r.answer(ctx)
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

// reconcileRun is the state of one ReconcileInvoice stream: a bounded buffer of lines, never
// the invoice.
type reconcileRun struct {
	s                *ReportingServer
	runID, partnerID string
	partner, month   string
	start, end       time.Time
	max              int
	lastLine         int64
	pending          []store.InvoiceLine
}

func (r *reconcileRun) accept(ctx context.Context, req *enrollv1.ReconcileInvoiceRequest) error {
	if r.runID == "" {
		if err := r.begin(ctx, req); err != nil {
			return err
		}
	} else if (req.GetPartner() != "" && req.GetPartner() != r.partner) || (req.GetMonth() != "" && req.GetMonth() != r.month) {
		return enrollment.Invalidf("partner and month are set by the first message; a later one named %q %q", req.GetPartner(), req.GetMonth())
	}
	if len(req.GetLines()) > maxInvoiceChunk {
		return enrollment.Invalidf("send at most %d lines per message, not %d", maxInvoiceChunk, len(req.GetLines()))
	}
	for _, l := range req.GetLines() {
		line, err := r.line(l)
		if err != nil {
			return err
		}
		r.pending = append(r.pending, line)
	}
	if len(r.pending) >= stageChunk {
		return r.flush(ctx)
	}
	return nil
}

func (r *reconcileRun) begin(ctx context.Context, req *enrollv1.ReconcileInvoiceRequest) error {
	partnerID, start, end, err := r.s.billableScope(ctx, req.GetPartner(), req.GetMonth())
	if err != nil {
		return err
	}
	switch n := req.GetMaxDifferences(); {
	case n < 0:
		return enrollment.Invalidf("max_differences must not be negative")
	case n == 0 || n > maxDifferences:
		r.max = maxDifferences
	default:
		r.max = int(n)
	}
	now := r.s.now()
	if _, err := r.s.Store.PurgeReconcileRuns(ctx, now.Add(-staleRunAge)); err != nil {
		return err
	}
	runID := newID()
	if err := r.s.Store.CreateReconcileRun(ctx, runID, now); err != nil {
		return err
	}
	r.runID, r.partnerID, r.partner, r.month, r.start, r.end = runID, partnerID, req.GetPartner(), req.GetMonth(), start, end
	return nil
}

// line checks one invoice line: numbers increase through the stream (so each is unique and
// names one place in the vendor's file), and exactly one value is set.
func (r *reconcileRun) line(l *enrollv1.InvoiceLine) (store.InvoiceLine, error) {
	if l.GetLine() <= r.lastLine {
		return store.InvoiceLine{}, enrollment.Invalidf("line %d: line numbers must be positive and increase through the stream (the previous was %d)", l.GetLine(), r.lastLine)
	}
	r.lastLine = l.GetLine()
	out := store.InvoiceLine{Line: l.GetLine()}
	var v string
	switch x := l.GetValue().(type) {
	case *enrollv1.InvoiceLine_MemberId:
		v = x.MemberId
		out.MemberID = v
	case *enrollv1.InvoiceLine_Enrollment:
		v = strings.TrimPrefix(x.Enrollment, "enrollments/")
		out.EnrollmentID = v
	}
	switch {
	case v == "":
		return out, enrollment.Invalidf("line %d: set member_id or enrollment", l.GetLine())
	case len(v) > maxInvoiceValue || !utf8.ValidString(v):
		return out, enrollment.Invalidf("line %d: a billed value must be valid UTF-8 of at most %d bytes", l.GetLine(), maxInvoiceValue)
	}
	return out, nil
}

func (r *reconcileRun) flush(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	if err := r.s.Store.StageInvoiceLines(ctx, r.runID, r.partnerID, r.pending); err != nil {
		return err
	}
	r.pending = r.pending[:0]
	return nil
}

// cleanup deletes the staged lines even when the client went away mid-stream.
func (r *reconcileRun) cleanup(ctx context.Context) {
	if r.runID == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if err := r.s.Store.DeleteReconcileRun(ctx, r.runID); err != nil {
		r.s.Logger.ErrorContext(ctx, "failed to delete a reconciliation's staged lines; the next reconciliation a day on purges them",
			"run", r.runID, "err", err)
	}
}

var reasonToProto = map[store.NotBillableReason]enrollv1.NotBillableReason{
	store.ReasonNeverActivated:   enrollv1.NotBillableReason_NOT_BILLABLE_REASON_NEVER_ACTIVATED,
	store.ReasonEndedBeforeMonth: enrollv1.NotBillableReason_NOT_BILLABLE_REASON_ENDED_BEFORE_MONTH,
	store.ReasonNotStarted:       enrollv1.NotBillableReason_NOT_BILLABLE_REASON_NOT_STARTED,
	store.ReasonOtherPartner:     enrollv1.NotBillableReason_NOT_BILLABLE_REASON_OTHER_PARTNER,
	store.ReasonUnknown:          enrollv1.NotBillableReason_NOT_BILLABLE_REASON_UNKNOWN,
	store.ReasonDuplicate:        enrollv1.NotBillableReason_NOT_BILLABLE_REASON_DUPLICATE,
}

// answer reads the exact totals, then lists each kind of difference a page at a time up to
// the cap. billable is matched + billable_not_billed, so the totals add up by construction.
func (r *reconcileRun) answer(ctx context.Context) (*enrollv1.ReconcileInvoiceResponse, error) {
	st := r.s.Store
	counts, err := st.CountReconcileRun(ctx, r.runID, r.partnerID, r.start, r.end)
	if err != nil {
		return nil, err
	}
	t := &enrollv1.ReconcileTotals{Matched: counts.Lines[store.ReasonNone], BillableNotBilled: counts.BillableNotBilled}
	for reason, n := range counts.Lines {
		t.InvoiceLines += n
		if reason == store.ReasonNone {
			continue
		}
		p, ok := reasonToProto[reason]
		if !ok {
			return nil, errors.New("store returned unknown not-billable reason " + string(reason))
		}
		t.BilledNotBillable += n
		t.ByReason = append(t.ByReason, &enrollv1.NotBillableCount{Reason: p, Lines: n})
	}
	slices.SortFunc(t.ByReason, func(a, b *enrollv1.NotBillableCount) int { return cmp.Compare(a.GetReason(), b.GetReason()) })
	t.Billable = t.Matched + t.BillableNotBilled
	resp := &enrollv1.ReconcileInvoiceResponse{Partner: partnerName(r.partnerID), Month: r.start.Format("2006-01"), Totals: t}

	var after int64
	for len(resp.BilledNotBillable) < r.max {
		limit := min(exportPageSize, r.max-len(resp.BilledNotBillable))
		rows, err := st.ListBilledNotBillable(ctx, r.runID, r.partnerID, r.start, r.end, after, limit)
		if err != nil {
			return nil, err
		}
		for _, b := range rows {
			d := &enrollv1.BilledNotBillable{Line: b.Line, Value: b.MemberID, Reason: reasonToProto[b.Reason], FirstLine: b.FirstLine}
			if b.EnrollmentID != "" {
				d.Value = enrollmentName(b.EnrollmentID)
			}
			if b.ResolvedID != "" {
				d.Enrollment = enrollmentName(b.ResolvedID)
			}
			resp.BilledNotBillable = append(resp.BilledNotBillable, d)
		}
		if len(rows) < limit {
			break
		}
		after = rows[len(rows)-1].Line
	}

	afterID := ""
	for len(resp.BillableNotBilled) < r.max {
		limit := min(exportPageSize, r.max-len(resp.BillableNotBilled))
		rows, err := st.ListBillableNotBilled(ctx, r.runID, r.partnerID, r.start, r.end, afterID, limit)
		if err != nil {
			return nil, err
		}
		for _, e := range rows {
			resp.BillableNotBilled = append(resp.BillableNotBilled, &enrollv1.BillableNotBilled{Enrollment: enrollmentName(e.EnrollmentID), MemberId: e.MemberID})
		}
		if len(rows) < limit {
			break
		}
		afterID = rows[len(rows)-1].EnrollmentID
	}
	return resp, nil
}
