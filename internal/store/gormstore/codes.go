package gormstore

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/enrollment"
)

func findCode(tx *gorm.DB, hmacs [][]byte) (*codeRow, error) {
	var row codeRow
	if err := tx.Where("code_hmac IN ?", hmacs).Take(&row).Error; err != nil {
		if isNotFound(err) {
			return nil, enrollment.NotFoundf("no such code; check the code in your letter and try again")
		}
		return nil, err
	}
	return &row, nil
}

func (r *codeRow) toDomain() enrollment.Code {
	c := enrollment.Code{
		ID: r.ID, IncidentID: r.IncidentID, CohortID: r.CohortID, SubjectID: r.SubjectID, BatchID: r.BatchID,
		KeyID: r.KeyID, HMAC: r.CodeHMAC, Attempt: r.Attempt, State: enrollment.CodeState(r.State),
		IssueTime: r.IssueTime.UTC(), RedeemBy: r.RedeemBy.UTC(), RevokeReason: r.RevokeReason,
	}
	if r.RedeemTime != nil {
		c.RedeemTime = r.RedeemTime.UTC()
	}
	if r.RevokeTime != nil {
		c.RevokeTime = r.RevokeTime.UTC()
	}
	return c
}

// LookupCode finds a code and the context that describes it.
func (s *Store) LookupCode(ctx context.Context, hmacs [][]byte) (*enrollment.CodeView, error) {
	db := s.db.WithContext(ctx)
	row, err := findCode(db, hmacs)
	if err != nil {
		return nil, err
	}
	return s.codeView(db, row, nil, "")
}

// codeView describes a code. A caller that has already read the code's incident, or knows
// its enrollment, passes them (inc non-nil, enrollmentID non-empty) to save the queries: a
// redemption builds its view inside the write transaction.
func (s *Store) codeView(db *gorm.DB, row *codeRow, inc *incidentRow, enrollmentID string) (*enrollment.CodeView, error) {
	v := &enrollment.CodeView{Code: row.toDomain()}
	var subj subjectRow
	if err := db.Where("id = ?", row.SubjectID).Take(&subj).Error; err != nil {
		return nil, err
	}
	v.ExternalRef = subj.ExternalRef
	if inc == nil {
		inc = &incidentRow{}
		if err := db.Where("id = ?", row.IncidentID).Take(inc).Error; err != nil {
			return nil, err
		}
	}
	v.Incident = *inc.toDomain()
	var p partnerRow
	if err := db.Where("id = ?", inc.PartnerID).Take(&p).Error; err != nil {
		return nil, err
	}
	v.Partner = enrollment.Partner{ID: p.ID, DisplayName: p.DisplayName, EnrollmentURI: p.EnrollmentURI}
	var cohorts []cohortRow
	err := db.Where("incident_id = ? AND id IN (?)", row.IncidentID,
		db.Model(&membershipRow{}).Select("cohort_id").Where("subject_id = ?", row.SubjectID)).
		Order("id").Find(&cohorts).Error
	if err != nil {
		return nil, err
	}
	for i := range cohorts {
		v.Cohorts = append(v.Cohorts, *cohorts[i].toDomain())
	}
	if enrollmentID != "" {
		v.EnrollmentID = enrollmentID
		return v, nil
	}
	var ids []string
	if err := db.Model(&enrollmentRow{}).Where("code_id = ?", row.ID).Limit(1).Pluck("id", &ids).Error; err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		v.EnrollmentID = ids[0]
	}
	return v, nil
}

// RedeemCode claims a code with a conditional update (WHERE state = 'ISSUED') in the same
// transaction that creates the enrollment: of many concurrent callers exactly one updates a
// row; the rest see zero rows affected and get ErrAlreadyExists.
func (s *Store) RedeemCode(ctx context.Context, hmacs [][]byte, enrollmentID string, now time.Time) (*enrollment.Enrollment, *enrollment.CodeView, error) {
	var (
		out  *enrollment.Enrollment
		view *enrollment.CodeView
	)
	err := s.tx(ctx, func(tx *gorm.DB) error {
		row, err := findCode(tx, hmacs)
		if err != nil {
			return err
		}
		code := row.toDomain()
		if err := code.CheckRedeemable(now); err != nil {
			return err
		}
		res := tx.Model(&codeRow{}).Where("id = ? AND state = ?", row.ID, string(enrollment.CodeIssued)).
			Updates(map[string]any{"state": string(enrollment.CodeRedeemed), "redeem_time": now})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			// Lost a race since the read above: the code was redeemed, or revoked, by another
			// transaction. Report what it is now, not always "redeemed".
			cur, err := findCode(tx, hmacs)
			if err != nil {
				return err
			}
			curCode := cur.toDomain()
			if err := curCode.CheckRedeemable(now); err != nil {
				return err
			}
			return enrollment.AlreadyExistsf("this code has already been redeemed; use the status page to see your enrollment")
		}
		var inc incidentRow
		if err := tx.Where("id = ?", row.IncidentID).Take(&inc).Error; err != nil {
			return err
		}
		sid := row.SubjectID
		e := enrollmentRow{
			ID: enrollmentID, IncidentID: row.IncidentID, CohortID: row.CohortID, SubjectID: row.SubjectID,
			CodeID: row.ID, PartnerID: inc.PartnerID, LiveSubjectID: &sid, State: string(enrollment.EnrollmentPending),
			RedeemTime: now, ActivationDeadline: now.AddDate(0, 0, inc.ActivationWindowDays),
		}
		if err := tx.Create(&e).Error; err != nil {
			if isDuplicate(err) {
				return enrollment.FailedPreconditionf("this person already has an enrollment in progress")
			}
			return err
		}
		row.State, row.RedeemTime = string(enrollment.CodeRedeemed), &now
		if view, err = s.codeView(tx, row, &inc, e.ID); err != nil {
			return err
		}
		// The counters and the partner's event sequence are rows every redemption writes: on
		// PostgreSQL their row locks serialise redemptions until commit, so they come last.
		d := deltas{}
		d.move(row.IncidentID, row.CohortID, enrollment.CountCodes, string(enrollment.CodeIssued), string(enrollment.CodeRedeemed), now)
		d.add(row.IncidentID, row.CohortID, enrollment.CountEnrollments, string(enrollment.EnrollmentPending), 1, now)
		if err := d.apply(tx); err != nil {
			return err
		}
		if err := appendEvent(tx, "enrollment.created", "enrollments/"+e.ID, e.IncidentID, e.PartnerID, 1, now); err != nil {
			return err
		}
		out = e.toDomain()
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, view, nil
}

// RevokeCode revokes the live code of a subject.
func (s *Store) RevokeCode(ctx context.Context, incidentID, externalRef, reason string, now time.Time) (*enrollment.Code, error) {
	var out enrollment.Code
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var subj subjectRow
		if err := tx.Where("incident_id = ? AND external_ref = ?", incidentID, externalRef).Take(&subj).Error; err != nil {
			if isNotFound(err) {
				return enrollment.NotFoundf("subject %q not found in incident %q", externalRef, incidentID)
			}
			return err
		}
		var row codeRow
		if err := tx.Where("live_subject_id = ?", subj.ID).Take(&row).Error; err != nil {
			if isNotFound(err) {
				return enrollment.NotFoundf("subject %q has no live code", externalRef)
			}
			return err
		}
		code := row.toDomain()
		if st := code.StateAt(now); st != enrollment.CodeIssued {
			return enrollment.FailedPreconditionf("the code is %s, not ISSUED; only an unredeemed code can be revoked (cancel the enrollment instead)", st)
		}
		res := tx.Model(&codeRow{}).Where("id = ? AND state = ?", row.ID, string(enrollment.CodeIssued)).
			Updates(map[string]any{"state": string(enrollment.CodeRevoked), "revoke_time": now, "revoke_reason": reason, "live_subject_id": nil})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return enrollment.FailedPreconditionf("the code changed state concurrently; read it again")
		}
		d := deltas{}
		d.move(row.IncidentID, row.CohortID, enrollment.CountCodes, string(enrollment.CodeIssued), string(enrollment.CodeRevoked), now)
		if err := d.apply(tx); err != nil {
			return err
		}
		var partnerID string
		if err := tx.Model(&incidentRow{}).Where("id = ?", incidentID).Pluck("partner_id", &partnerID).Error; err != nil {
			return err
		}
		if err := appendEvent(tx, "code.revoked", "incidents/"+incidentID+"/subjects/"+externalRef, incidentID, partnerID, 1, now); err != nil {
			return err
		}
		out = code
		out.State, out.RevokeTime, out.RevokeReason = enrollment.CodeRevoked, now, reason
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}
