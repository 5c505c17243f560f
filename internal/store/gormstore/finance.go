package gormstore

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/store"
)

// RepairCounters replaces an incident's counter rows with a recount, in one transaction (and
// so with the audit entry of the call that asked for it).
func (s *Store) RepairCounters(ctx context.Context, incidentID string) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Where("incident_id = ?", incidentID).Delete(&counterRow{}).Error; err != nil {
			return err
		}
		if err := tx.Where("incident_id = ?", incidentID).Delete(&dailyCounterRow{}).Error; err != nil {
			return err
		}
		rows, err := s.recount(tx, incidentID)
		if err != nil {
			return err
		}
		for _, r := range rows {
			var err error
			if r.Day == "" {
				err = tx.Create(&counterRow{IncidentID: r.IncidentID, CohortID: r.CohortID, Kind: string(r.Kind), State: r.State, N: r.N}).Error
			} else {
				err = tx.Create(&dailyCounterRow{IncidentID: r.IncidentID, CohortID: r.CohortID, Kind: string(r.Kind), State: r.State, Day: r.Day, N: r.N}).Error
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// billable selects a partner's enrollments that were ACTIVE at some instant of [start, end):
// activated before the month ends, and not ended (cancelled, or coverage over) by the time
// it starts. An enrollment cancelled at 00:00:00 on the first is not billable that month;
// one activated at 23:59:59 on the last day is.
func billable(db *gorm.DB, partnerID string, start, end time.Time) *gorm.DB {
	return db.Model(&enrollmentRow{}).
		Where("partner_id = ? AND activate_time IS NOT NULL AND activate_time < ?", partnerID, end).
		Where("COALESCE(cancel_time, coverage_end) > ?", start)
}

// CountBillable counts a partner's billable enrollments in [start, end).
func (s *Store) CountBillable(ctx context.Context, partnerID string, start, end time.Time) (int64, error) {
	var n int64
	err := billable(s.db.WithContext(ctx), partnerID, start, end).Count(&n).Error
	return n, err
}

// ListBillable pages through the same set by enrollment id.
func (s *Store) ListBillable(ctx context.Context, partnerID string, start, end time.Time, after string, limit int) ([]store.BillableEnrollment, error) {
	var rows []enrollmentRow
	err := billable(s.db.WithContext(ctx), partnerID, start, end).Where("id > ?", after).Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make([]store.BillableEnrollment, len(rows))
	for i := range rows {
		e := rows[i].toDomain()
		out[i] = store.BillableEnrollment{EnrollmentID: e.ID, MemberID: e.MemberID, IncidentID: e.IncidentID, ActivateTime: e.ActivateTime, EndTime: e.CancelTime}
		if e.CancelTime.IsZero() {
			out[i].EndTime = e.CoverageEnd
		}
	}
	return out, nil
}
