package gormstore

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/enrollment"
)

// ClaimLease takes or renews the named lease for owner until until, if it is free, expired
// at now, or already owner's. The conditional upsert is atomic on both engines.
//
// A lease another owner holds is refused after a plain read first: a waiting replica asks
// every interval, and its upsert would need SQLite's write lock, queueing behind the holder's
// back-to-back sweep transactions until the busy timeout failed it ("database is locked").
func (s *Store) ClaimLease(ctx context.Context, name, owner string, now, until time.Time) (bool, error) {
	var held []leaseRow
	if err := s.db.WithContext(ctx).Where("name = ?", name).Limit(1).Find(&held).Error; err != nil {
		return false, err
	}
	if len(held) == 1 && held[0].Owner != owner && !held[0].Until.Before(now) {
		return false, nil
	}
	res := s.db.WithContext(ctx).Exec(`INSERT INTO leases (name, owner, until) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
		WHERE leases.until < ? OR leases.owner = excluded.owner`, name, owner, until, now)
	if res.Error != nil {
		return false, res.Error
	}
	return res.RowsAffected == 1, nil
}

// ReleaseLease gives the lease up if owner holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	return s.db.WithContext(ctx).Where("name = ? AND owner = ?", name, owner).Delete(&leaseRow{}).Error
}

// SweepCodes records up to limit ISSUED codes whose redeem-by instant has passed as EXPIRED,
// with the counters, and one summarised event per incident (a sweep may expire a million
// codes at once; nobody needs a million events). It returns how many it expired.
func (s *Store) SweepCodes(ctx context.Context, now time.Time, limit int) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *gorm.DB) error {
		n = 0
		var due []struct {
			ID         int64
			IncidentID string
			CohortID   string
			RedeemBy   time.Time
		}
		err := tx.Model(&codeRow{}).Select("id, incident_id, cohort_id, redeem_by").
			Where("state = ? AND redeem_by <= ?", string(enrollment.CodeIssued), now).
			Order("redeem_by, id").Limit(limit).Scan(&due).Error
		if err != nil || len(due) == 0 {
			return err
		}
		ids := make([]int64, len(due))
		for i, d := range due {
			ids[i] = d.ID
		}
		// A code may change between the select and the update: a reissue records the expiry
		// itself, a redemption whose request came in just before redeem-by wins. That writer
		// counts it; RETURNING tells exactly which rows this sweep moved, so the sweep neither
		// miscounts nor fails its whole batch over one code.
		moved := make(map[int64]bool, len(ids))
		for _, part := range chunk(len(ids), 500) {
			var got []int64
			err := tx.Raw("UPDATE codes SET state = ?, live_subject_id = NULL WHERE id IN ? AND state = ? RETURNING id",
				string(enrollment.CodeExpired), ids[part[0]:part[1]], string(enrollment.CodeIssued)).Scan(&got).Error
			if err != nil {
				return err
			}
			for _, id := range got {
				moved[id] = true
			}
		}
		d := deltas{}
		perIncident := map[string]int64{}
		for _, c := range due {
			if !moved[c.ID] {
				continue
			}
			d.move(c.IncidentID, c.CohortID, enrollment.CountCodes, string(enrollment.CodeIssued), string(enrollment.CodeExpired), c.RedeemBy)
			perIncident[c.IncidentID]++
		}
		if err := d.apply(tx); err != nil {
			return err
		}
		for inc, count := range perIncident {
			if err := appendEvent(tx, "codes.expired", "incidents/"+inc, inc, "", count, now); err != nil {
				return err
			}
		}
		n = len(moved)
		return nil
	})
	return n, err
}

// SweepEnrollments records up to limit enrollments past a deadline: PENDING past the
// activation deadline become LAPSED, ACTIVE past coverage end become EXPIRED. Each gets its
// own event, because the partner's change feed must say which member's coverage ended.
//
// Locks are taken in the order every other writer takes them (enrollment rows, then counter
// rows, then the partner's sequence row), so on PostgreSQL a sweep cannot deadlock with a
// concurrent activation or cancellation. An enrollment a partner changed since the select
// (cancelled a second before its deadline) is left to that change, not counted.
func (s *Store) SweepEnrollments(ctx context.Context, now time.Time, limit int) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *gorm.DB) error {
		n = 0
		var due []enrollmentRow
		err := tx.Where("(state = ? AND activation_deadline <= ?) OR (state = ? AND coverage_end <= ?)",
			string(enrollment.EnrollmentPending), now, string(enrollment.EnrollmentActive), now).
			Order("id").Limit(limit).Find(&due).Error
		if err != nil || len(due) == 0 {
			return err
		}
		d := deltas{}
		var done []*enrollmentRow
		for i := range due {
			e := &due[i]
			to, at := enrollment.EnrollmentLapsed, e.ActivationDeadline
			if e.State == string(enrollment.EnrollmentActive) {
				to, at = enrollment.EnrollmentExpired, *e.CoverageEnd
			}
			res := tx.Model(&enrollmentRow{}).Where("id = ? AND state = ?", e.ID, e.State).
				Updates(map[string]any{"state": string(to), "live_subject_id": nil})
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				continue
			}
			d.move(e.IncidentID, e.CohortID, enrollment.CountEnrollments, e.State, string(to), at)
			done = append(done, e)
		}
		if err := d.apply(tx); err != nil {
			return err
		}
		for _, e := range done {
			typ := "enrollment.lapsed"
			if e.State == string(enrollment.EnrollmentActive) {
				typ = "enrollment.expired"
			}
			if err := appendEvent(tx, typ, "enrollments/"+e.ID, e.IncidentID, e.PartnerID, 1, now); err != nil {
				return err
			}
		}
		n = len(done)
		return nil
	})
	return n, err
}

// SweepExpiring emits enrollment.expiring once for up to limit ACTIVE enrollments whose
// coverage ends within window of now. As in SweepEnrollments, the rows are marked before any
// event takes the partner's sequence row, and one cancelled since the select gets no notice.
func (s *Store) SweepExpiring(ctx context.Context, now time.Time, window time.Duration, limit int) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *gorm.DB) error {
		n = 0
		var due []enrollmentRow
		err := tx.Where("state = ? AND expiring_notified = ? AND coverage_end <= ? AND coverage_end > ?",
			string(enrollment.EnrollmentActive), false, now.Add(window), now).
			Order("id").Limit(limit).Find(&due).Error
		if err != nil || len(due) == 0 {
			return err
		}
		var done []*enrollmentRow
		for i := range due {
			e := &due[i]
			res := tx.Model(&enrollmentRow{}).Where("id = ? AND state = ? AND expiring_notified = ?", e.ID, string(enrollment.EnrollmentActive), false).
				Update("expiring_notified", true)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 1 {
				done = append(done, e)
			}
		}
		for _, e := range done {
			if err := appendEvent(tx, "enrollment.expiring", "enrollments/"+e.ID, e.IncidentID, e.PartnerID, 1, now); err != nil {
				return err
			}
		}
		n = len(done)
		return nil
	})
	return n, err
}
