package service

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sort"
	"strings"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/identity"
)

const (
	maxChunkRows     = 10000
	importBatchRows  = 5000
	maxReportedError = 1000
	defaultMaxErrors = 1000
	exportPageSize   = 1000
)

// ImportSubjects imports a stream of eligibility rows. Identity fields are reduced to the
// identity key here, before anything reaches the store; rows are committed in chunks of
// importBatchRows, so memory stays flat however long the stream, and a failure loses at most
// the chunk in flight (which a rerun, being idempotent, redoes).
func (s *AdminServer) ImportSubjects(stream enrollv1.AdminService_ImportSubjectsServer) error {
	ctx := stream.Context()
	imp := &importRun{s: s, resp: &enrollv1.ImportSubjectsResponse{}, seen: map[string][]byte{}}
	// No store write may outlive the call.
	defer imp.wait()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := imp.accept(ctx, req); err != nil {
			return err
		}
		if imp.full() {
			if err := imp.flush(ctx); err != nil {
				return err
			}
		}
		if imp.resp.Stopped {
			// The rows before the stop are kept, as the contract promises; a rerun of the
			// file skips them as unchanged.
			if err := imp.finish(ctx); err != nil {
				return err
			}
			return stream.SendAndClose(imp.resp)
		}
	}
	if imp.incidentID == "" {
		return enrollment.Invalidf("send at least one message with parent set to incidents/{incident}")
	}
	if err := imp.finish(ctx); err != nil {
		return err
	}
	return stream.SendAndClose(imp.resp)
}

// importRun is the state of one ImportSubjects stream.
type importRun struct {
	s          *AdminServer
	incidentID string
	maxErrors  int64
	rows       []enrollment.SubjectRow
	resp       *enrollv1.ImportSubjectsResponse
	// seen remembers the identity key of each external_ref in the current chunk, so that a
	// reference repeated with different data inside one chunk is caught (across chunks the
	// store catches it).
	seen map[string][]byte
	// inflight carries the outcome of the chunk being written, if any. One chunk is written
	// while the next is received and hashed, so the database is never idle waiting for the
	// stream; chunks still commit one after another, in file order.
	inflight chan chunkResult
}

type chunkResult struct {
	res *enrollment.ImportResult
	err error
}

func (r *importRun) accept(ctx context.Context, req *enrollv1.ImportSubjectsRequest) error {
	if r.incidentID == "" {
		id, err := parseName("parent", req.GetParent(), "incidents")
		if err != nil {
			return err
		}
		if _, err := r.s.Store.GetIncident(ctx, id); err != nil {
			return err
		}
		r.incidentID, r.maxErrors = id, req.GetMaxErrors()
		if r.maxErrors <= 0 {
			r.maxErrors = defaultMaxErrors
		}
	} else if req.GetParent() != "" && req.GetParent() != incidentName(r.incidentID) {
		return enrollment.Invalidf("every message of one import must name the same parent")
	}
	if len(req.GetSubjects()) > maxChunkRows {
		return enrollment.Invalidf("send at most %d subjects per message (got %d)", maxChunkRows, len(req.GetSubjects()))
	}
	for _, rec := range req.GetSubjects() {
		if r.resp.Stopped {
			// Rows after the one that hit the limit are neither read nor kept.
			break
		}
		r.resp.RowsRead++
		line := rec.GetLine()
		if line <= 0 {
			line = r.resp.RowsRead
		}
		row, err := r.s.subjectRow(line, rec)
		if err == nil {
			if key, dup := r.seen[row.ExternalRef]; dup && !bytes.Equal(key, row.IdentityKey) {
				err = enrollment.Invalidf("external_ref %s appears earlier in this file with different identity data", row.ExternalRef)
			}
		}
		if err != nil {
			// The chunk in flight may hold errors only the store finds, on earlier lines:
			// count them first, so that the stop falls on the right line.
			if werr := r.wait(); werr != nil {
				return werr
			}
			if r.resp.Stopped {
				r.resp.RowsRead--
				break
			}
			r.reject(enrollment.ImportError{Line: line, Reason: err.Error()})
			continue
		}
		r.seen[row.ExternalRef] = row.IdentityKey
		r.rows = append(r.rows, row)
	}
	return nil
}

func (r *importRun) full() bool { return len(r.rows) >= importBatchRows }

func (r *importRun) reject(e enrollment.ImportError) {
	r.resp.ErrorCount++
	if len(r.resp.Errors) < maxReportedError {
		r.resp.Errors = append(r.resp.Errors, &enrollv1.ImportError{Line: e.Line, Reason: e.Reason})
	}
	if r.resp.ErrorCount > r.maxErrors {
		r.resp.Stopped = true
	}
}

// flush starts writing the rows received so far, once the chunk before them is written. If
// that earlier chunk's errors reached the limit, the stop lies before these rows and they are
// dropped unwritten; if a row of this chunk reached it (accept has already collected the
// earlier chunk then), the rows before the stop are kept.
func (r *importRun) flush(ctx context.Context) error {
	stoppedHere := r.resp.Stopped
	if err := r.wait(); err != nil {
		return err
	}
	rows := r.rows
	r.rows, r.seen = make([]enrollment.SubjectRow, 0, importBatchRows), map[string][]byte{}
	if len(rows) == 0 || (r.resp.Stopped && !stoppedHere) {
		return nil
	}
	r.inflight = make(chan chunkResult, 1)
	go func(done chan<- chunkResult) {
		res, err := r.s.Store.ImportSubjects(ctx, r.incidentID, rows)
		done <- chunkResult{res, err}
	}(r.inflight)
	return nil
}

// finish writes what is left and waits for it.
func (r *importRun) finish(ctx context.Context) error {
	if err := r.flush(ctx); err != nil {
		return err
	}
	return r.wait()
}

// wait collects the chunk in flight, if any, into the response.
func (r *importRun) wait() error {
	if r.inflight == nil {
		return nil
	}
	out := <-r.inflight
	r.inflight = nil
	if out.err != nil {
		return out.err
	}
	r.resp.Created += out.res.Created
	r.resp.MembershipsAdded += out.res.MembershipsAdded
	r.resp.Unchanged += out.res.Unchanged
	for _, e := range out.res.Errors {
		r.reject(e)
	}
	sort.Slice(r.resp.Errors, func(i, j int) bool { return r.resp.Errors[i].Line < r.resp.Errors[j].Line })
	return nil
}

func (s *AdminServer) subjectRow(line int64, r *enrollv1.SubjectRecord) (enrollment.SubjectRow, error) {
	ref := strings.TrimSpace(r.GetExternalRef())
	if err := enrollment.ValidateExternalRef(ref); err != nil {
		return enrollment.SubjectRow{}, err
	}
	cohort := strings.TrimSpace(r.GetCohort())
	if cohort == "" {
		return enrollment.SubjectRow{}, enrollment.Invalidf("cohort is required")
	}
	key, err := s.Identity.Key(identity.Fields{
		LastName: r.GetLastName(), DateOfBirth: r.GetDateOfBirth(), SSN: r.GetSsn(),
		Phone: r.GetPhone(), PostalCode: r.GetPostalCode(),
	})
	if err != nil {
		return enrollment.SubjectRow{}, err
	}
	return enrollment.SubjectRow{Line: line, ExternalRef: ref, CohortID: cohort, IdentityKey: key}, nil
}

// IssueCodes starts one batch per cohort in scope and returns them RUNNING; the issuance
// runner does the work in the background. Codes are derived from a fresh per-batch secret
// stored only wrapped under the master key, so the mail-house export can be produced again
// until it is purged, and nothing else ever holds the plaintext.
func (s *AdminServer) IssueCodes(ctx context.Context, req *enrollv1.IssueCodesRequest) (*enrollv1.IssueCodesResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	cohorts, err := s.issueScope(ctx, req)
	if err != nil {
		return nil, err
	}
	in, err := s.Store.GetIncident(ctx, cohorts[0].IncidentID)
	if err != nil {
		return nil, err
	}
	resp := &enrollv1.IssueCodesResponse{}
	for i, c := range cohorts {
		secret, err := enrollcodes.NewBatchSecret()
		if err != nil {
			return nil, err
		}
		now := s.now()
		b := &enrollment.Batch{
			// i keeps the ids of one call in cohort order even if the clock stands still:
			// the runner works through batches in id order.
			ID: newBatchID(now.Add(time.Duration(i))), IncidentID: c.IncidentID, CohortID: c.ID, State: enrollment.BatchRunning,
			RedeemBy: in.RedeemBy(now), Creator: clientName(p.ClientID), CreateTime: now, UpdateTime: now,
			MasterKeyID: s.MasterKey.ID(), LookupKeyID: s.Keyring.Current(),
		}
		if b.WrappedSecret, err = s.MasterKey.Wrap(secret, []byte(b.ID)); err != nil {
			return nil, err
		}
		if err := s.Store.CreateBatch(ctx, b); err != nil {
			return nil, err
		}
		resp.Batches = append(resp.Batches, batchToProto(b))
	}
	s.Issuer.Notify()
	return resp, nil
}

// issueScope resolves the cohorts an IssueCodes request covers.
func (s *AdminServer) issueScope(ctx context.Context, req *enrollv1.IssueCodesRequest) ([]*enrollment.Cohort, error) {
	switch {
	case (req.GetCohort() == "") == (req.GetIncident() == ""):
		return nil, enrollment.Invalidf("set exactly one of cohort (incidents/{id}/cohorts/{id}) or incident (incidents/{id})")
	case req.GetCohort() != "":
		incidentID, cohortID, err := parseChildName("cohort", req.GetCohort(), "incidents", "cohorts")
		if err != nil {
			return nil, err
		}
		c, err := s.Store.GetCohort(ctx, incidentID, cohortID)
		if err != nil {
			return nil, err
		}
		if !c.OfferApplies {
			return nil, enrollment.FailedPreconditionf("cohort %q is not offered protection (offer_applies is false); no codes are issued for it", cohortID)
		}
		return []*enrollment.Cohort{c}, nil
	}
	incidentID, err := parseName("incident", req.GetIncident(), "incidents")
	if err != nil {
		return nil, err
	}
	if _, err := s.Store.GetIncident(ctx, incidentID); err != nil {
		return nil, err
	}
	var out []*enrollment.Cohort
	after := ""
	for {
		page, err := s.Store.ListCohorts(ctx, incidentID, after, maxPageSize)
		if err != nil {
			return nil, err
		}
		for _, c := range page {
			if c.OfferApplies {
				out = append(out, c)
			}
		}
		if len(page) < maxPageSize {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(out) == 0 {
		return nil, enrollment.FailedPreconditionf("incident %q has no cohort that is offered protection", incidentID)
	}
	return out, nil
}

// ListBatches pages through batches, newest first.
func (s *AdminServer) ListBatches(ctx context.Context, req *enrollv1.ListBatchesRequest) (*enrollv1.ListBatchesResponse, error) {
	var incidentID string
	if req.GetIncident() != "" {
		id, err := parseName("incident", req.GetIncident(), "incidents")
		if err != nil {
			return nil, err
		}
		incidentID = id
	}
	size, before, err := page(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	list, err := s.Store.ListBatches(ctx, incidentID, before, size)
	if err != nil {
		return nil, err
	}
	resp := &enrollv1.ListBatchesResponse{}
	for _, b := range list {
		resp.Batches = append(resp.Batches, batchToProto(b))
	}
	if len(list) > 0 {
		resp.NextPageToken = nextPageToken(len(list), size, list[len(list)-1].ID)
	}
	return resp, nil
}

// GetBatch reads a batch.
func (s *AdminServer) GetBatch(ctx context.Context, req *enrollv1.GetBatchRequest) (*enrollv1.GetBatchResponse, error) {
	id, err := parseName("name", req.GetName(), "batches")
	if err != nil {
		return nil, err
	}
	b, err := s.Store.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	return &enrollv1.GetBatchResponse{Batch: batchToProto(b)}, nil
}

// ExportBatchCodes streams the mail-house rows of a batch, re-deriving each code from the
// batch secret and checking it against the stored HMAC before it leaves.
func (s *AdminServer) ExportBatchCodes(req *enrollv1.ExportBatchCodesRequest, stream enrollv1.AdminService_ExportBatchCodesServer) error {
	ctx := stream.Context()
	id, err := parseName("name", req.GetName(), "batches")
	if err != nil {
		return err
	}
	b, err := s.Store.GetBatch(ctx, id)
	if err != nil {
		return err
	}
	if b.WrappedSecret == nil {
		return enrollment.FailedPreconditionf("the export of batch %s was purged; the codes can no longer be produced (reissue codes to the affected subjects instead)", id)
	}
	if b.State == enrollment.BatchRunning {
		return enrollment.FailedPreconditionf("batch %s is still running; export it once it has SUCCEEDED", id)
	}
	secret, err := s.MasterKey.Unwrap(b.WrappedSecret, []byte(b.ID))
	if err != nil {
		return err
	}
	var after int64
	for {
		rows, err := s.Store.ListBatchCodes(ctx, id, after, exportPageSize)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		resp := &enrollv1.ExportBatchCodesResponse{Codes: make([]*enrollv1.ExportedCode, 0, len(rows))}
		for _, r := range rows {
			c := enrollcodes.Derive(secret, r.SubjectID, r.Attempt)
			sum, err := s.Keyring.Sum(r.KeyID, c)
			if err != nil || !bytes.Equal(sum, r.HMAC) {
				return errExportIntegrity
			}
			resp.Codes = append(resp.Codes, &enrollv1.ExportedCode{
				ExternalRef: r.ExternalRef, Cohort: r.CohortID, Code: c.String(), RedeemByTime: ts(r.RedeemBy),
			})
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		after = rows[len(rows)-1].CodeID
	}
}

type exportIntegrityError struct{}

func (exportIntegrityError) Error() string {
	return "export integrity check failed: a derived code does not match its stored HMAC (wrong master or lookup key configured?)"
}

var errExportIntegrity = exportIntegrityError{}

// PurgeBatchExport destroys the batch secret.
func (s *AdminServer) PurgeBatchExport(ctx context.Context, req *enrollv1.PurgeBatchExportRequest) (*enrollv1.PurgeBatchExportResponse, error) {
	id, err := parseName("name", req.GetName(), "batches")
	if err != nil {
		return nil, err
	}
	b, err := s.Store.PurgeBatchSecret(ctx, id, s.now())
	if err != nil {
		return nil, err
	}
	return &enrollv1.PurgeBatchExportResponse{Batch: batchToProto(b)}, nil
}

// RevokeCode revokes a subject's live code.
func (s *AdminServer) RevokeCode(ctx context.Context, req *enrollv1.RevokeCodeRequest) (*enrollv1.RevokeCodeResponse, error) {
	incidentID, ref, err := parseChildName("subject", req.GetSubject(), "incidents", "subjects")
	if err != nil {
		return nil, err
	}
	reason := strings.TrimSpace(req.GetReason())
	if reason == "" || len(reason) > 500 {
		return nil, enrollment.Invalidf("reason is required (at most 500 characters)")
	}
	c, err := s.Store.RevokeCode(ctx, incidentID, ref, reason, s.now())
	if err != nil {
		return nil, err
	}
	return &enrollv1.RevokeCodeResponse{State: codeStateToProto(c.State), RevokeTime: ts(c.RevokeTime)}, nil
}
