package service

import (
	"bytes"
	"context"
	"sort"
	"strings"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/identity"
	"github.com/idprotect/enroll/internal/store"
)

const (
	maxImportRows  = 10000
	issueChunkSize = 2000
	exportPageSize = 1000
)

// ImportSubjects imports eligibility rows. Identity fields are reduced to the identity key
// here, before anything reaches the store; bad rows are reported by line and skipped.
func (s *AdminServer) ImportSubjects(ctx context.Context, req *enrollv1.ImportSubjectsRequest) (*enrollv1.ImportSubjectsResponse, error) {
	incidentID, err := parseName("parent", req.GetParent(), "incidents")
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if n := len(req.GetSubjects()); n == 0 || n > maxImportRows {
		return nil, s.toStatus(ctx, enrollment.Invalidf("send 1 to %d subjects per call (got %d); split larger files", maxImportRows, n))
	}
	first := req.GetFirstLine()
	if first <= 0 {
		first = 1
	}
	var (
		rows   []enrollment.SubjectRow
		errs   []enrollment.ImportError
		seenBy = map[string]int{}
	)
	for i, r := range req.GetSubjects() {
		line := first + int64(i)
		row, err := s.subjectRow(line, r)
		if err != nil {
			errs = append(errs, enrollment.ImportError{Line: line, Reason: err.Error()})
			continue
		}
		// The same reference twice in one call must carry the same person.
		if j, dup := seenBy[row.ExternalRef]; dup && !bytes.Equal(rows[j].IdentityKey, row.IdentityKey) {
			errs = append(errs, enrollment.ImportError{Line: line, Reason: "external_ref " + row.ExternalRef + " appears earlier in this file with different identity data"})
			continue
		}
		seenBy[row.ExternalRef] = len(rows)
		rows = append(rows, row)
	}
	res := &enrollment.ImportResult{}
	if len(rows) > 0 {
		if res, err = s.Store.ImportSubjects(ctx, incidentID, rows); err != nil {
			return nil, s.toStatus(ctx, err)
		}
	}
	errs = append(errs, res.Errors...)
	sort.Slice(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	resp := &enrollv1.ImportSubjectsResponse{Created: res.Created, MembershipsAdded: res.MembershipsAdded, Unchanged: res.Unchanged}
	for _, e := range errs {
		resp.Errors = append(resp.Errors, &enrollv1.ImportError{Line: e.Line, Reason: e.Reason})
	}
	return resp, nil
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

// IssueCodes issues codes to every member of a cohort that has none, as one batch. Codes are
// derived from a fresh per-batch secret stored only wrapped under the master key, so the
// mail-house export can be produced again until it is purged, and nothing else ever holds
// the plaintext.
func (s *AdminServer) IssueCodes(ctx context.Context, req *enrollv1.IssueCodesRequest) (*enrollv1.IssueCodesResponse, error) {
	incidentID, cohortID, err := parseChildName("cohort", req.GetCohort(), "incidents", "cohorts")
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	p, err := principal(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	in, err := s.Store.GetIncident(ctx, incidentID)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	secret, err := enrollcodes.NewBatchSecret()
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	now := s.now()
	b := &enrollment.Batch{
		ID: newID(), IncidentID: incidentID, CohortID: cohortID, State: enrollment.BatchRunning,
		RedeemBy: in.RedeemBy(now), Creator: clientName(p.ClientID), CreateTime: now, UpdateTime: now,
		MasterKeyID: s.MasterKey.ID(), LookupKeyID: s.Keyring.Current(),
	}
	if b.WrappedSecret, err = s.MasterKey.Wrap(secret, []byte(b.ID)); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := s.Store.CreateBatch(ctx, b); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := s.runBatch(ctx, b.ID, b.LookupKeyID, secret); err != nil {
		_ = s.Store.FinishBatch(context.WithoutCancel(ctx), b.ID, enrollment.BatchFailed, "issuance stopped; run IssueCodes again to issue the rest", s.now())
		return nil, s.toStatus(ctx, err)
	}
	if b, err = s.Store.GetBatch(ctx, b.ID); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &enrollv1.IssueCodesResponse{Batch: batchToProto(b)}, nil
}

// runBatch issues chunk after chunk until the cohort is covered.
func (s *AdminServer) runBatch(ctx context.Context, batchID, keyID string, secret []byte) error {
	mint := s.minter(keyID, secret)
	for {
		n, err := s.Store.IssueNext(ctx, batchID, issueChunkSize, s.now(), mint)
		if err != nil {
			return err
		}
		if n == 0 {
			return s.Store.FinishBatch(ctx, batchID, enrollment.BatchSucceeded, "", s.now())
		}
	}
}

func (s *base) minter(keyID string, secret []byte) store.MintFunc {
	return func(subjectID int64, attempt uint32) ([]byte, string) {
		c := enrollcodes.Derive(secret, subjectID, attempt)
		sum, err := s.Keyring.Sum(keyID, c)
		if err != nil {
			// keyID was taken from this keyring when the batch started; losing it mid-run
			// means the process was reconfigured underneath us.
			panic("lookup key " + keyID + " vanished from the keyring")
		}
		return sum, keyID
	}
}

// GetBatch reads a batch.
func (s *AdminServer) GetBatch(ctx context.Context, req *enrollv1.GetBatchRequest) (*enrollv1.GetBatchResponse, error) {
	id, err := parseName("name", req.GetName(), "batches")
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	b, err := s.Store.GetBatch(ctx, id)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &enrollv1.GetBatchResponse{Batch: batchToProto(b)}, nil
}

// ExportBatchCodes streams the mail-house rows of a batch, re-deriving each code from the
// batch secret and checking it against the stored HMAC before it leaves.
func (s *AdminServer) ExportBatchCodes(req *enrollv1.ExportBatchCodesRequest, stream enrollv1.AdminService_ExportBatchCodesServer) error {
	ctx := stream.Context()
	id, err := parseName("name", req.GetName(), "batches")
	if err != nil {
		return s.toStatus(ctx, err)
	}
	b, err := s.Store.GetBatch(ctx, id)
	if err != nil {
		return s.toStatus(ctx, err)
	}
	if b.WrappedSecret == nil {
		return s.toStatus(ctx, enrollment.FailedPreconditionf("the export of batch %s was purged; the codes can no longer be produced (reissue codes to the affected subjects instead)", id))
	}
	if b.State == enrollment.BatchRunning {
		return s.toStatus(ctx, enrollment.FailedPreconditionf("batch %s is still running; export it once it has SUCCEEDED", id))
	}
	secret, err := s.MasterKey.Unwrap(b.WrappedSecret, []byte(b.ID))
	if err != nil {
		return s.toStatus(ctx, err)
	}
	var after int64
	for {
		rows, err := s.Store.ListBatchCodes(ctx, id, after, exportPageSize)
		if err != nil {
			return s.toStatus(ctx, err)
		}
		if len(rows) == 0 {
			return nil
		}
		resp := &enrollv1.ExportBatchCodesResponse{Codes: make([]*enrollv1.ExportedCode, 0, len(rows))}
		for _, r := range rows {
			c := enrollcodes.Derive(secret, r.SubjectID, r.Attempt)
			sum, err := s.Keyring.Sum(r.KeyID, c)
			if err != nil || !bytes.Equal(sum, r.HMAC) {
				return s.toStatus(ctx, errExportIntegrity)
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
		return nil, s.toStatus(ctx, err)
	}
	b, err := s.Store.PurgeBatchSecret(ctx, id, s.now())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &enrollv1.PurgeBatchExportResponse{Batch: batchToProto(b)}, nil
}

// RevokeCode revokes a subject's live code.
func (s *AdminServer) RevokeCode(ctx context.Context, req *enrollv1.RevokeCodeRequest) (*enrollv1.RevokeCodeResponse, error) {
	incidentID, ref, err := parseChildName("subject", req.GetSubject(), "incidents", "subjects")
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	reason := strings.TrimSpace(req.GetReason())
	if reason == "" || len(reason) > 500 {
		return nil, s.toStatus(ctx, enrollment.Invalidf("reason is required (at most 500 characters)"))
	}
	c, err := s.Store.RevokeCode(ctx, incidentID, ref, reason, s.now())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &enrollv1.RevokeCodeResponse{State: codeStateToProto(c.State), RevokeTime: ts(c.RevokeTime)}, nil
}
