package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/enrollment"
)

// Recount compares every counter of an incident with a recount of the rows.
func (s *ReportingServer) Recount(ctx context.Context, req *enrollv1.RecountRequest) (*enrollv1.RecountResponse, error) {
	incidentID, err := parseName("incident", req.GetIncident(), "incidents")
	if err != nil {
		return nil, err
	}
	diffs, checked, err := s.differences(ctx, incidentID)
	if err != nil {
		return nil, err
	}
	return &enrollv1.RecountResponse{Differences: diffs, CountersChecked: checked}, nil
}

// RepairCounters replaces the counters with the recount (the call is audited like any other
// mutation, in the repair's own transaction).
func (s *ReportingServer) RepairCounters(ctx context.Context, req *enrollv1.RepairCountersRequest) (*enrollv1.RepairCountersResponse, error) {
	incidentID, err := parseName("incident", req.GetIncident(), "incidents")
	if err != nil {
		return nil, err
	}
	diffs, _, err := s.differences(ctx, incidentID)
	if err != nil {
		return nil, err
	}
	if err := s.Store.RepairCounters(ctx, incidentID); err != nil {
		return nil, err
	}
	return &enrollv1.RepairCountersResponse{Repaired: diffs}, nil
}

func (s *ReportingServer) differences(ctx context.Context, incidentID string) ([]*enrollv1.CounterDifference, int64, error) {
	if _, err := s.Store.GetIncident(ctx, incidentID); err != nil {
		return nil, 0, err
	}
	counters, err := s.Store.Counters(ctx, incidentID)
	if err != nil {
		return nil, 0, err
	}
	actual, err := s.Store.Recount(ctx, incidentID)
	if err != nil {
		return nil, 0, err
	}
	type key struct{ cohort, kind, state, day string }
	both := map[key][2]int64{}
	for _, c := range counters {
		k := key{c.CohortID, string(c.Kind), c.State, c.Day}
		v := both[k]
		v[0] = c.N
		both[k] = v
	}
	for _, a := range actual {
		k := key{a.CohortID, string(a.Kind), a.State, a.Day}
		v := both[k]
		v[1] = a.N
		both[k] = v
	}
	var diffs []*enrollv1.CounterDifference
	for k, v := range both {
		if v[0] != v[1] {
			diffs = append(diffs, &enrollv1.CounterDifference{Cohort: cohortName(incidentID, k.cohort), Kind: k.kind, State: k.state, Day: k.day, Counter: v[0], Actual: v[1]})
		}
	}
	return diffs, int64(len(both)), nil
}

// monthRange parses YYYY-MM into [first instant, first instant of the next month) in UTC.
func monthRange(month string) (time.Time, time.Time, error) {
	start, err := time.Parse("2006-01", month)
	if err != nil {
		return time.Time{}, time.Time{}, enrollment.Invalidf("month must look like 2026-10 (YYYY-MM)")
	}
	return start, start.AddDate(0, 1, 0), nil
}

// GetBillableMonths counts a partner's billable member-months in a month.
func (s *ReportingServer) GetBillableMonths(ctx context.Context, req *enrollv1.GetBillableMonthsRequest) (*enrollv1.GetBillableMonthsResponse, error) {
	partnerID, start, end, err := s.billableScope(ctx, req.GetPartner(), req.GetMonth())
	if err != nil {
		return nil, err
	}
	n, err := s.Store.CountBillable(ctx, partnerID, start, end)
	if err != nil {
		return nil, err
	}
	return &enrollv1.GetBillableMonthsResponse{MemberMonths: n}, nil
}

func (s *ReportingServer) billableScope(ctx context.Context, partner, month string) (string, time.Time, time.Time, error) {
	partnerID, err := parseName("partner", partner, "partners")
	if err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	start, end, err := monthRange(month)
	if err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	if _, err := s.Store.GetPartner(ctx, partnerID); err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	return partnerID, start, end, nil
}

// ExportBillable streams the enrollments behind GetBillableMonths as CSV, in enrollment id
// order, a page at a time.
func (s *ReportingServer) ExportBillable(req *enrollv1.ExportBillableRequest, stream enrollv1.ReportingService_ExportBillableServer) error {
	ctx := stream.Context()
	partnerID, start, end, err := s.billableScope(ctx, req.GetPartner(), req.GetMonth())
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("enrollment,member_id,incident,activate_time,end_time\n")
	after := ""
	for {
		rows, err := s.Store.ListBillable(ctx, partnerID, start, end, after, exportPageSize)
		if err != nil {
			return err
		}
		for _, r := range rows {
			fmt.Fprintf(&b, "%s,%s,%s,%s,%s\n", enrollmentName(r.EnrollmentID), csvSafe(r.MemberID), incidentName(r.IncidentID),
				r.ActivateTime.UTC().Format(time.RFC3339), r.EndTime.UTC().Format(time.RFC3339))
		}
		if b.Len() > 0 {
			if err := stream.Send(&httpbody.HttpBody{ContentType: "text/csv; charset=utf-8", Data: []byte(b.String())}); err != nil {
				return err
			}
			b.Reset()
		}
		if len(rows) < exportPageSize {
			return nil
		}
		after = rows[len(rows)-1].EnrollmentID
	}
}

// csvSafe quotes a partner-supplied value when CSV needs it and defuses spreadsheet formulas.
func csvSafe(v string) string {
	if v != "" && strings.ContainsAny(v[:1], "=+-@") {
		v = "'" + v
	}
	if strings.ContainsAny(v, ",\"\n\r") {
		v = `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
	}
	return v
}
