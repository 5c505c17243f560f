package service

import (
	"context"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/enrollment"
)

// ReportingServer implements enrollv1.ReportingServiceServer.
type ReportingServer struct {
	enrollv1.UnimplementedReportingServiceServer
	*base
}

// GetCounts reads the counter rows of an incident.
func (s *ReportingServer) GetCounts(ctx context.Context, req *enrollv1.GetCountsRequest) (*enrollv1.GetCountsResponse, error) {
	incidentID, err := parseName("incident", req.GetIncident(), "incidents")
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if _, err := s.Store.GetIncident(ctx, incidentID); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	rows, err := s.Store.Counters(ctx, incidentID)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &enrollv1.GetCountsResponse{
		Incident: incidentName(incidentID), Codes: &enrollv1.CodeCounts{},
		Enrollments: &enrollv1.EnrollmentCounts{}, ReadTime: ts(s.now()),
	}
	byCohort := map[string]*enrollv1.CohortCounts{}
	for _, r := range rows {
		cc, ok := byCohort[r.CohortID]
		if !ok {
			cc = &enrollv1.CohortCounts{Cohort: cohortName(incidentID, r.CohortID), Codes: &enrollv1.CodeCounts{}, Enrollments: &enrollv1.EnrollmentCounts{}}
			byCohort[r.CohortID] = cc
			resp.Cohorts = append(resp.Cohorts, cc) // rows arrive in cohort order
		}
		switch r.Kind {
		case enrollment.CountCodes:
			addCode(cc.Codes, enrollment.CodeState(r.State), r.N)
			addCode(resp.Codes, enrollment.CodeState(r.State), r.N)
		case enrollment.CountEnrollments:
			addEnrollment(cc.Enrollments, enrollment.EnrollmentState(r.State), r.N)
			addEnrollment(resp.Enrollments, enrollment.EnrollmentState(r.State), r.N)
		}
	}
	return resp, nil
}

func addCode(c *enrollv1.CodeCounts, s enrollment.CodeState, n int64) {
	c.Issued += n
	switch s {
	case enrollment.CodeIssued:
		c.Outstanding += n
	case enrollment.CodeRedeemed:
		c.Redeemed += n
	case enrollment.CodeExpired:
		c.Expired += n
	case enrollment.CodeRevoked:
		c.Revoked += n
	}
}

func addEnrollment(c *enrollv1.EnrollmentCounts, s enrollment.EnrollmentState, n int64) {
	switch s {
	case enrollment.EnrollmentPending:
		c.Pending += n
	case enrollment.EnrollmentActive:
		c.Active += n
	case enrollment.EnrollmentExpired:
		c.Expired += n
	case enrollment.EnrollmentCancelled:
		c.Cancelled += n
	case enrollment.EnrollmentLapsed:
		c.Lapsed += n
	}
}
