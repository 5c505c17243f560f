package service

import (
	"context"
	"strings"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/identity"
	"github.com/idprotect/enroll/internal/issuance"
)

// ReissueCode replaces a subject's code with a new one in a one-code batch.
func (s *AdminServer) ReissueCode(ctx context.Context, req *enrollv1.ReissueCodeRequest) (*enrollv1.ReissueCodeResponse, error) {
	incidentID, ref, err := parseChildName("subject", req.GetSubject(), "incidents", "subjects")
	if err != nil {
		return nil, err
	}
	reason := strings.TrimSpace(req.GetReason())
	if reason == "" || len(reason) > 500 {
		return nil, enrollment.Invalidf("reason is required (at most 500 characters)")
	}
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	in, err := s.Store.GetIncident(ctx, incidentID)
	if err != nil {
		return nil, err
	}
	secret, err := enrollcodes.NewBatchSecret()
	if err != nil {
		return nil, err
	}
	now := s.now()
	b := &enrollment.Batch{
		ID: newBatchID(now), IncidentID: incidentID, RedeemBy: in.RedeemBy(now), Creator: clientName(p.ClientID),
		MasterKeyID: s.MasterKey.ID(), LookupKeyID: s.Keyring.Current(),
	}
	if b.WrappedSecret, err = s.MasterKey.Wrap(secret, []byte(b.ID)); err != nil {
		return nil, err
	}
	mint, err := issuance.Minter(s.Keyring, b.LookupKeyID, secret)
	if err != nil {
		return nil, err
	}
	got, err := s.Store.ReissueCode(ctx, incidentID, ref, reason, b, now, mint)
	if err != nil {
		return nil, err
	}
	return &enrollv1.ReissueCodeResponse{Batch: batchToProto(got), RevokeTime: ts(now)}, nil
}

// CancelOwnEnrollment cancels the enrollment made with a code, for the person holding it.
func (s *RedemptionServer) CancelOwnEnrollment(ctx context.Context, req *enrollv1.CancelOwnEnrollmentRequest) (*enrollv1.CancelOwnEnrollmentResponse, error) {
	code, err := enrollcodes.Parse(req.GetCode())
	if err != nil {
		return nil, err
	}
	reason := strings.TrimSpace(req.GetReason())
	if len(reason) > 500 {
		return nil, enrollment.Invalidf("reason must be at most 500 characters")
	}
	v, err := s.Store.LookupCode(ctx, s.digests(code))
	if err != nil {
		return nil, err
	}
	if v.EnrollmentID == "" {
		return nil, enrollment.FailedPreconditionf("this code has not been redeemed, so there is no enrollment to cancel")
	}
	now := s.now()
	e, err := s.Store.CancelEnrollment(ctx, v.EnrollmentID, "", "cancelled by the member: "+reason, now)
	if err != nil {
		return nil, err
	}
	return &enrollv1.CancelOwnEnrollmentResponse{Enrollment: enrollmentToProto(e, now, false)}, nil
}

// resendAnswer is the one answer to every well-formed resend request.
const resendAnswer = "If these details match someone eligible for this offer, a new letter with their code will be mailed to the address on file within 10 business days."

// resendFloor pads every resend request to the same minimum duration, so response time does
// not tell a match from a miss either.
const resendFloor = 150 * time.Millisecond

// RequestCodeResend records a lost-code request without revealing whether anyone matched.
func (s *RedemptionServer) RequestCodeResend(ctx context.Context, req *enrollv1.RequestCodeResendRequest) (*enrollv1.RequestCodeResendResponse, error) {
	start := time.Now()
	key, err := s.Identity.Key(identity.Fields{
		LastName: req.GetLastName(), DateOfBirth: req.GetDateOfBirth(), SSN: req.GetSsn(),
		Phone: req.GetPhone(), PostalCode: req.GetPostalCode(),
	})
	if err != nil {
		return nil, enrollment.Invalidf("%s", err.Error())
	}
	if err := s.Store.RecordResendRequest(ctx, key, s.now()); err != nil {
		return nil, err
	}
	if wait := resendFloor - time.Since(start); wait > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return &enrollv1.RequestCodeResendResponse{Message: resendAnswer}, nil
}

// ListEnrollmentEvents pages through the partner's change feed.
func (s *PartnerServer) ListEnrollmentEvents(ctx context.Context, req *enrollv1.ListEnrollmentEventsRequest) (*enrollv1.ListEnrollmentEventsResponse, error) {
	partnerID, err := s.partnerID(ctx)
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0 || req.GetAfterSequence() < 0:
		return nil, enrollment.Invalidf("page_size and after_sequence must not be negative")
	case size == 0:
		size = 100
	case size > maxPageSize:
		size = maxPageSize
	}
	events, err := s.Store.ListPartnerEvents(ctx, partnerID, req.GetAfterSequence(), size)
	if err != nil {
		return nil, err
	}
	resp := &enrollv1.ListEnrollmentEventsResponse{LastSequence: req.GetAfterSequence()}
	for _, e := range events {
		resp.Events = append(resp.Events, &enrollv1.EnrollmentEvent{
			Sequence: e.Sequence, Type: e.Type, Resource: e.Resource, Time: ts(e.Time), Incident: incidentName(e.IncidentID),
		})
		resp.LastSequence = e.Sequence
	}
	return resp, nil
}
