package service

import (
	"context"
	"strings"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
)

// PartnerServer implements enrollv1.PartnerServiceServer. Every call is scoped to the
// caller's partner: other partners' codes and enrollments read as not found.
type PartnerServer struct {
	enrollv1.UnimplementedPartnerServiceServer
	*base
}

func (s *PartnerServer) partnerID(ctx context.Context) (string, error) {
	p, err := principal(ctx)
	if err != nil {
		return "", err
	}
	if p.PartnerID == "" {
		return "", enrollment.PermissionDeniedf("this call needs a partner client")
	}
	return p.PartnerID, nil
}

// VerifyCode describes a code of one of the partner's incidents.
func (s *PartnerServer) VerifyCode(ctx context.Context, req *enrollv1.VerifyCodeRequest) (*enrollv1.VerifyCodeResponse, error) {
	partnerID, err := s.partnerID(ctx)
	if err != nil {
		return nil, err
	}
	code, err := enrollcodes.Parse(req.GetCode())
	if err != nil {
		return nil, err
	}
	v, err := s.Store.LookupCode(ctx, s.digests(code))
	if err == nil && v.Partner.ID != partnerID {
		err = enrollment.NotFoundf("no such code; check the code in your letter and try again")
	}
	if err != nil {
		return nil, err
	}
	resp := &enrollv1.VerifyCodeResponse{
		State:          codeStateToProto(v.Code.StateAt(s.now())),
		Incident:       incidentName(v.Incident.ID),
		RedeemByTime:   ts(v.Code.RedeemBy),
		CoverageMonths: int32(v.Incident.CoverageMonths),
	}
	for _, c := range v.Cohorts {
		resp.Cohorts = append(resp.Cohorts, cohortName(c.IncidentID, c.ID))
	}
	if v.EnrollmentID != "" {
		resp.Enrollment = enrollmentName(v.EnrollmentID)
	}
	return resp, nil
}

// ActivateEnrollment binds the partner's member id and starts coverage.
func (s *PartnerServer) ActivateEnrollment(ctx context.Context, req *enrollv1.ActivateEnrollmentRequest) (*enrollv1.ActivateEnrollmentResponse, error) {
	partnerID, err := s.partnerID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName("name", req.GetName(), "enrollments")
	if err != nil {
		return nil, err
	}
	member := strings.TrimSpace(req.GetMemberId())
	if err := enrollment.ValidateMemberID(member); err != nil {
		return nil, err
	}
	now := s.now()
	e, err := s.Store.ActivateEnrollment(ctx, id, partnerID, member, now)
	if err != nil {
		return nil, err
	}
	return &enrollv1.ActivateEnrollmentResponse{Enrollment: enrollmentToProto(e, now, true)}, nil
}

// GetEnrollment reads one of the partner's enrollments.
func (s *PartnerServer) GetEnrollment(ctx context.Context, req *enrollv1.GetEnrollmentRequest) (*enrollv1.GetEnrollmentResponse, error) {
	partnerID, err := s.partnerID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName("name", req.GetName(), "enrollments")
	if err != nil {
		return nil, err
	}
	e, err := s.Store.GetEnrollment(ctx, id, partnerID)
	if err != nil {
		return nil, err
	}
	return &enrollv1.GetEnrollmentResponse{Enrollment: enrollmentToProto(e, s.now(), true)}, nil
}

// ListEnrollments pages through the partner's enrollments.
func (s *PartnerServer) ListEnrollments(ctx context.Context, req *enrollv1.ListEnrollmentsRequest) (*enrollv1.ListEnrollmentsResponse, error) {
	partnerID, err := s.partnerID(ctx)
	if err != nil {
		return nil, err
	}
	size, after, err := page(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if _, known := enrollv1.EnrollmentState_name[int32(req.GetState())]; !known {
		return nil, enrollment.Invalidf("state is not a known enrollment state")
	}
	list, err := s.Store.ListEnrollments(ctx, partnerID, after, enrollmentStateFromProto(req.GetState()), size)
	if err != nil {
		return nil, err
	}
	now := s.now()
	resp := &enrollv1.ListEnrollmentsResponse{}
	for _, e := range list {
		resp.Enrollments = append(resp.Enrollments, enrollmentToProto(e, now, true))
	}
	if len(list) > 0 {
		resp.NextPageToken = nextPageToken(len(list), size, list[len(list)-1].ID)
	}
	return resp, nil
}

// CancelEnrollment stops coverage.
func (s *PartnerServer) CancelEnrollment(ctx context.Context, req *enrollv1.CancelEnrollmentRequest) (*enrollv1.CancelEnrollmentResponse, error) {
	partnerID, err := s.partnerID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName("name", req.GetName(), "enrollments")
	if err != nil {
		return nil, err
	}
	reason := strings.TrimSpace(req.GetReason())
	if len(reason) > 500 {
		return nil, enrollment.Invalidf("reason must be at most 500 characters")
	}
	now := s.now()
	e, err := s.Store.CancelEnrollment(ctx, id, partnerID, reason, now)
	if err != nil {
		return nil, err
	}
	return &enrollv1.CancelEnrollmentResponse{Enrollment: enrollmentToProto(e, now, true)}, nil
}
