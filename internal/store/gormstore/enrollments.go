package gormstore

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/enrollment"
)

func (r *enrollmentRow) toDomain() *enrollment.Enrollment {
	e := &enrollment.Enrollment{
		ID: r.ID, IncidentID: r.IncidentID, CohortID: r.CohortID, SubjectID: r.SubjectID, CodeID: r.CodeID,
		PartnerID: r.PartnerID, State: enrollment.EnrollmentState(r.State), RedeemTime: r.RedeemTime.UTC(),
		ActivationDeadline: r.ActivationDeadline.UTC(), CancelReason: r.CancelReason,
	}
	if r.MemberID != nil {
		e.MemberID = *r.MemberID
	}
	if r.ActivateTime != nil {
		e.ActivateTime = r.ActivateTime.UTC()
	}
	if r.CoverageEnd != nil {
		e.CoverageEnd = r.CoverageEnd.UTC()
	}
	if r.CancelTime != nil {
		e.CancelTime = r.CancelTime.UTC()
	}
	return e
}

func findEnrollment(tx *gorm.DB, id, partnerID string) (*enrollmentRow, error) {
	q := tx.Where("id = ?", id)
	if partnerID != "" {
		// Another partner's enrollment reads as absent: its existence is not theirs to know.
		q = q.Where("partner_id = ?", partnerID)
	}
	var row enrollmentRow
	if err := q.Take(&row).Error; err != nil {
		if isNotFound(err) {
			return nil, enrollment.NotFoundf("enrollment %q not found", id)
		}
		return nil, err
	}
	return &row, nil
}

// GetEnrollment returns an enrollment, scoped to a partner when partnerID is set.
func (s *Store) GetEnrollment(ctx context.Context, id, partnerID string) (*enrollment.Enrollment, error) {
	row, err := findEnrollment(s.db.WithContext(ctx), id, partnerID)
	if err != nil {
		return nil, err
	}
	return row.toDomain(), nil
}

// ListEnrollments pages through a partner's enrollments by id.
func (s *Store) ListEnrollments(ctx context.Context, partnerID, after string, state enrollment.EnrollmentState, limit int) ([]*enrollment.Enrollment, error) {
	q := s.db.WithContext(ctx).Where("partner_id = ? AND id > ?", partnerID, after)
	if state != "" {
		q = q.Where("state = ?", string(state))
	}
	var rows []enrollmentRow
	if err := q.Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]*enrollment.Enrollment, len(rows))
	for i := range rows {
		out[i] = rows[i].toDomain()
	}
	return out, nil
}

// ActivateEnrollment binds the member id and starts coverage.
func (s *Store) ActivateEnrollment(ctx context.Context, id, partnerID, memberID string, now time.Time) (*enrollment.Enrollment, error) {
	var out *enrollment.Enrollment
	err := s.tx(ctx, func(tx *gorm.DB) error {
		row, err := findEnrollment(tx, id, partnerID)
		if err != nil {
			return err
		}
		if err := row.toDomain().CheckActivatable(now); err != nil {
			return err
		}
		var months int
		if err := tx.Model(&incidentRow{}).Where("id = ?", row.IncidentID).Pluck("coverage_months", &months).Error; err != nil {
			return err
		}
		end := enrollment.AddMonthsClamped(now, months)
		res := tx.Model(&enrollmentRow{}).Where("id = ? AND state = ?", id, string(enrollment.EnrollmentPending)).
			Updates(map[string]any{"state": string(enrollment.EnrollmentActive), "member_id": memberID, "activate_time": now, "coverage_end": end})
		if res.Error != nil {
			if isDuplicate(res.Error) {
				return enrollment.AlreadyExistsf("member_id is already bound to another enrollment of this partner")
			}
			return res.Error
		}
		if res.RowsAffected != 1 {
			return enrollment.FailedPreconditionf("enrollment changed state concurrently; read it again")
		}
		d := deltas{}
		d.move(row.IncidentID, row.CohortID, enrollment.CountEnrollments, string(enrollment.EnrollmentPending), string(enrollment.EnrollmentActive), now)
		if err := d.apply(tx); err != nil {
			return err
		}
		if err := appendEvent(tx, "enrollment.activated", "enrollments/"+id, row.IncidentID, row.PartnerID, 1, now); err != nil {
			return err
		}
		row.State, row.MemberID, row.ActivateTime, row.CoverageEnd = string(enrollment.EnrollmentActive), &memberID, &now, &end
		out = row.toDomain()
		return nil
	})
	return out, err
}

// CancelEnrollment stops coverage now.
func (s *Store) CancelEnrollment(ctx context.Context, id, partnerID, reason string, now time.Time) (*enrollment.Enrollment, error) {
	var out *enrollment.Enrollment
	err := s.tx(ctx, func(tx *gorm.DB) error {
		row, err := findEnrollment(tx, id, partnerID)
		if err != nil {
			return err
		}
		if err := row.toDomain().CheckCancellable(now); err != nil {
			return err
		}
		res := tx.Model(&enrollmentRow{}).Where("id = ? AND state = ?", id, row.State).
			Updates(map[string]any{"state": string(enrollment.EnrollmentCancelled), "cancel_time": now, "cancel_reason": reason, "live_subject_id": nil})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return enrollment.FailedPreconditionf("enrollment changed state concurrently; read it again")
		}
		d := deltas{}
		d.move(row.IncidentID, row.CohortID, enrollment.CountEnrollments, row.State, string(enrollment.EnrollmentCancelled), now)
		if err := d.apply(tx); err != nil {
			return err
		}
		if err := appendEvent(tx, "enrollment.cancelled", "enrollments/"+id, row.IncidentID, row.PartnerID, 1, now); err != nil {
			return err
		}
		row.State, row.CancelTime, row.CancelReason, row.LiveSubjectID = string(enrollment.EnrollmentCancelled), &now, reason, nil
		out = row.toDomain()
		return nil
	})
	return out, err
}
