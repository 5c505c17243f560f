package service

import (
	"context"
	"time"

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
		return nil, err
	}
	if _, err := s.Store.GetIncident(ctx, incidentID); err != nil {
		return nil, err
	}
	from, to := req.GetFromDay(), req.GetToDay()
	if (from == "") != (to == "") {
		return nil, enrollment.Invalidf("set both from_day and to_day (YYYY-MM-DD) for daily counts, or neither")
	}
	for _, d := range []string{from, to} {
		if _, err := time.Parse(time.DateOnly, d); d != "" && err != nil {
			return nil, enrollment.Invalidf("from_day and to_day must look like 2026-10-31")
		}
	}
	// Daily rows grow with the incident's age: read them only when asked for.
	read := s.Store.StateCounters
	if from != "" {
		read = s.Store.Counters
	}
	rows, err := read(ctx, incidentID)
	if err != nil {
		return nil, err
	}
	resp := &enrollv1.GetCountsResponse{
		Incident: incidentName(incidentID), Codes: &enrollv1.CodeCounts{},
		Enrollments: &enrollv1.EnrollmentCounts{}, ReadTime: ts(s.now()),
	}
	byCohort := map[string]*enrollv1.CohortCounts{}
	for _, r := range rows {
		if r.Day != "" {
			if from != "" && r.Day >= from && r.Day <= to {
				resp.Days = append(resp.Days, &enrollv1.DailyCount{Day: r.Day, Cohort: cohortName(incidentID, r.CohortID), Kind: string(r.Kind), State: r.State, Count: r.N})
			}
			continue
		}
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

// ExportAudit streams the audit chain.
func (s *ReportingServer) ExportAudit(req *enrollv1.ExportAuditRequest, stream enrollv1.ReportingService_ExportAuditServer) error {
	ctx := stream.Context()
	if req.GetAfterSequence() < 0 {
		return enrollment.Invalidf("after_sequence must not be negative")
	}
	after := req.GetAfterSequence()
	for {
		entries, err := s.Store.ListAudit(ctx, after, exportPageSize)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		resp := &enrollv1.ExportAuditResponse{Entries: make([]*enrollv1.AuditEntry, len(entries))}
		for i, e := range entries {
			resp.Entries[i] = &enrollv1.AuditEntry{
				Sequence: e.Seq, Time: ts(e.Time), Actor: e.Actor, Role: e.Role, Action: e.Action, Resource: e.Resource,
				RequestId: e.RequestID, Outcome: e.Outcome, PrevHash: e.PrevHash, Hash: e.Hash,
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		after = entries[len(entries)-1].Seq
	}
}
