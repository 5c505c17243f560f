package service

import (
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/enrollment"
)

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func incidentName(id string) string    { return "incidents/" + id }
func cohortName(inc, id string) string { return "incidents/" + inc + "/cohorts/" + id }
func partnerName(id string) string     { return "partners/" + id }
func enrollmentName(id string) string  { return "enrollments/" + id }
func batchName(id string) string       { return "batches/" + id }
func clientName(id string) string      { return "clients/" + id }

func incidentToProto(in *enrollment.Incident) *enrollv1.Incident {
	return &enrollv1.Incident{
		Name:         incidentName(in.ID),
		Title:        in.Title,
		DiscloseTime: ts(in.DiscloseTime),
		Offer: &enrollv1.Offer{
			CoverageMonths:       int32(in.CoverageMonths),
			RedeemWindowDays:     int32(in.RedeemWindowDays),
			ActivationWindowDays: int32(in.ActivationWindowDays),
		},
		Partner:    partnerName(in.PartnerID),
		CreateTime: ts(in.CreateTime),
	}
}

const exposedPrefix = "EXPOSED_DATA_"

func exposedToProto(names []string) []enrollv1.ExposedData {
	out := make([]enrollv1.ExposedData, 0, len(names))
	for _, n := range names {
		out = append(out, enrollv1.ExposedData(enrollv1.ExposedData_value[exposedPrefix+n]))
	}
	return out
}

func cohortToProto(c *enrollment.Cohort) *enrollv1.Cohort {
	return &enrollv1.Cohort{
		Name:               cohortName(c.IncidentID, c.ID),
		DisplayName:        c.DisplayName,
		ExposedData:        exposedToProto(c.ExposedData),
		RecommendedActions: c.RecommendedActions,
		OfferApplies:       c.OfferApplies,
		SubjectCount:       c.SubjectCount,
	}
}

func partnerToProto(p *enrollment.Partner) *enrollv1.Partner {
	return &enrollv1.Partner{Name: partnerName(p.ID), DisplayName: p.DisplayName, EnrollmentUri: p.EnrollmentURI}
}

func batchToProto(b *enrollment.Batch) *enrollv1.Batch {
	return &enrollv1.Batch{
		Name:         batchName(b.ID),
		Cohort:       cohortName(b.IncidentID, b.CohortID),
		State:        enrollv1.BatchState(enrollv1.BatchState_value["BATCH_STATE_"+string(b.State)]),
		Total:        b.Total,
		Issued:       b.Issued,
		RedeemByTime: ts(b.RedeemBy),
		Creator:      b.Creator,
		CreateTime:   ts(b.CreateTime),
		UpdateTime:   ts(b.UpdateTime),
		ExportPurged: b.WrappedSecret == nil,
		Error:        b.Error,
		IssueRate:    b.IssueRate(),
	}
}

func codeStateToProto(s enrollment.CodeState) enrollv1.CodeState {
	return enrollv1.CodeState(enrollv1.CodeState_value["CODE_STATE_"+string(s)])
}

func enrollmentStateToProto(s enrollment.EnrollmentState) enrollv1.EnrollmentState {
	return enrollv1.EnrollmentState(enrollv1.EnrollmentState_value["ENROLLMENT_STATE_"+string(s)])
}

func enrollmentStateFromProto(s enrollv1.EnrollmentState) enrollment.EnrollmentState {
	if s == enrollv1.EnrollmentState_ENROLLMENT_STATE_UNSPECIFIED {
		return ""
	}
	return enrollment.EnrollmentState(strings.TrimPrefix(s.String(), "ENROLLMENT_STATE_"))
}

// enrollmentToProto renders an enrollment as of now. withMember is false for the public
// redemption API: the partner's member id is none of the public's business.
func enrollmentToProto(e *enrollment.Enrollment, now time.Time, withMember bool) *enrollv1.Enrollment {
	out := &enrollv1.Enrollment{
		Name:                   enrollmentName(e.ID),
		Incident:               incidentName(e.IncidentID),
		Cohort:                 cohortName(e.IncidentID, e.CohortID),
		Partner:                partnerName(e.PartnerID),
		State:                  enrollmentStateToProto(e.StateAt(now)),
		RedeemTime:             ts(e.RedeemTime),
		ActivationDeadlineTime: ts(e.ActivationDeadline),
		ActivateTime:           ts(e.ActivateTime),
		CoverageEndTime:        ts(e.CoverageEnd),
		CancelTime:             ts(e.CancelTime),
		ReadTime:               ts(now),
	}
	if withMember {
		out.MemberId = e.MemberID
	}
	return out
}
