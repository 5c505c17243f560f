package service

import (
	"context"
	"net/url"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
)

// RedemptionServer implements enrollv1.RedemptionServiceServer: the public API used by
// affected people. The code is the credential, so every method starts by parsing it; a typo
// is rejected before any database access.
type RedemptionServer struct {
	enrollv1.UnimplementedRedemptionServiceServer
	*base
}

// CheckCode tells what a code gives.
func (s *RedemptionServer) CheckCode(ctx context.Context, req *enrollv1.CheckCodeRequest) (*enrollv1.CheckCodeResponse, error) {
	code, err := enrollcodes.Parse(req.GetCode())
	if err != nil {
		return nil, err
	}
	v, err := s.Store.LookupCode(ctx, s.digests(code))
	if err != nil {
		return nil, err
	}
	resp := &enrollv1.CheckCodeResponse{
		State:              codeStateToProto(v.Code.StateAt(s.now())),
		IncidentTitle:      v.Incident.Title,
		CoverageMonths:     int32(v.Incident.CoverageMonths),
		RedeemByTime:       ts(v.Code.RedeemBy),
		PartnerDisplayName: v.Partner.DisplayName,
	}
	for i := range v.Cohorts {
		c := &v.Cohorts[i]
		resp.Cohorts = append(resp.Cohorts, &enrollv1.CohortOffer{
			DisplayName: c.DisplayName, RecommendedActions: c.RecommendedActions, ExposedData: exposedToProto(c.ExposedData),
		})
	}
	return resp, nil
}

// RedeemCode redeems a code.
func (s *RedemptionServer) RedeemCode(ctx context.Context, req *enrollv1.RedeemCodeRequest) (*enrollv1.RedeemCodeResponse, error) {
	code, err := enrollcodes.Parse(req.GetCode())
	if err != nil {
		return nil, err
	}
	now := s.now()
	e, v, err := s.Store.RedeemCode(ctx, s.digests(code), newID(), now)
	if err != nil {
		return nil, err
	}
	return &enrollv1.RedeemCodeResponse{
		Enrollment:  enrollmentToProto(e, now, false),
		NextStepUri: nextStep(v.Partner, e.ID),
	}, nil
}

// GetEnrollmentStatus shows the code's state and its enrollment.
func (s *RedemptionServer) GetEnrollmentStatus(ctx context.Context, req *enrollv1.GetEnrollmentStatusRequest) (*enrollv1.GetEnrollmentStatusResponse, error) {
	code, err := enrollcodes.Parse(req.GetCode())
	if err != nil {
		return nil, err
	}
	v, err := s.Store.LookupCode(ctx, s.digests(code))
	if err != nil {
		return nil, err
	}
	now := s.now()
	resp := &enrollv1.GetEnrollmentStatusResponse{CodeState: codeStateToProto(v.Code.StateAt(now))}
	if v.EnrollmentID != "" {
		e, err := s.Store.GetEnrollment(ctx, v.EnrollmentID, "")
		if err != nil {
			return nil, err
		}
		resp.Enrollment = enrollmentToProto(e, now, false)
		resp.NextStepUri = nextStep(v.Partner, e.ID)
	}
	return resp, nil
}

// nextStep is the partner's enrolment page for this enrollment. The enrollment id, not the
// code, goes into the URL: URLs end up in logs and referrers, codes must not.
func nextStep(p enrollment.Partner, enrollmentID string) string {
	u, err := url.Parse(p.EnrollmentURI)
	if err != nil {
		return p.EnrollmentURI
	}
	q := u.Query()
	q.Set("enrollment", enrollmentName(enrollmentID))
	u.RawQuery = q.Encode()
	return u.String()
}
