package gormstore

import (
	"context"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
)

// ReissueCode supersedes a subject's code with a new one in one transaction: the old code is
// revoked, the new one issued as the single code of batch b, counters and events move
// together. A subject whose code expired or was revoked gets a new one too; a redeemed code
// cannot be replaced (the enrollment exists).
func (s *Store) ReissueCode(ctx context.Context, incidentID, externalRef, reason string, b *enrollment.Batch, now time.Time, mint store.MintFunc) (*enrollment.Batch, error) {
	var out *enrollment.Batch
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var subj subjectRow
		if err := tx.Where("incident_id = ? AND external_ref = ?", incidentID, externalRef).Take(&subj).Error; err != nil {
			if isNotFound(err) {
				return enrollment.NotFoundf("subject %q not found in incident %q", externalRef, incidentID)
			}
			return err
		}
		// On PostgreSQL the incident row is locked, as IssueNext locks it (lockIssuance): two
		// reissues of a person without a live code (revoked, or expired and swept) would
		// otherwise both find none under READ COMMITTED, and the second insert would fail on
		// the one-live-code index as an internal error. Behind the lock, the second sees the
		// first's new code and supersedes it, as on SQLite, where BEGIN IMMEDIATE serialises.
		var inc incidentRow
		q := tx.Where("id = ?", incidentID)
		if s.driver == DriverPostgres {
			q = q.Clauses(clause.Locking{Strength: "UPDATE"})
		}
		if err := q.Take(&inc).Error; err != nil {
			return err
		}
		d := deltas{}
		cohortID := subj.CohortID
		var old codeRow
		err := tx.Where("live_subject_id = ?", subj.ID).Take(&old).Error
		switch {
		case err == nil:
			code := old.toDomain()
			to, reasonCol := enrollment.CodeRevoked, "superseded: "+reason
			switch st := code.StateAt(now); st {
			case enrollment.CodeIssued:
			case enrollment.CodeExpired:
				// Past redeem-by but not yet swept: record the expiry, then replace it.
				to, reasonCol = enrollment.CodeExpired, ""
			default:
				return enrollment.FailedPreconditionf("the code is %s; a redeemed code is not reissued (the enrollment exists)", st)
			}
			upd := map[string]any{"state": string(to), "live_subject_id": nil}
			if to == enrollment.CodeRevoked {
				upd["revoke_time"], upd["revoke_reason"] = now, reasonCol
			}
			res := tx.Model(&codeRow{}).Where("id = ? AND state = ?", old.ID, string(enrollment.CodeIssued)).Updates(upd)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				return enrollment.FailedPreconditionf("the code changed state concurrently; read it again")
			}
			at := now
			if to == enrollment.CodeExpired {
				at = old.RedeemBy
			}
			d.move(old.IncidentID, old.CohortID, enrollment.CountCodes, string(enrollment.CodeIssued), string(to), at)
			cohortID = old.CohortID
		case !isNotFound(err):
			return err
		}
		bRow := batchRow{
			ID: b.ID, IncidentID: incidentID, CohortID: cohortID, State: string(enrollment.BatchSucceeded),
			Total: 1, Issued: 1, ScanCursor: subj.ID, RedeemBy: b.RedeemBy, Creator: b.Creator, CreateTime: now,
			UpdateTime: now, WrappedSecret: b.WrappedSecret, MasterKeyID: b.MasterKeyID, LookupKeyID: b.LookupKeyID, LeaseUntil: now,
		}
		if err := tx.Create(&bRow).Error; err != nil {
			return err
		}
		rows, err := mintRows(tx, []int64{subj.ID}, mint, true)
		if err != nil {
			return err
		}
		if err := s.insertCodes(tx, &bRow, rows, now); err != nil {
			return err
		}
		d.add(incidentID, cohortID, enrollment.CountCodes, string(enrollment.CodeIssued), 1, now)
		if err := d.apply(tx); err != nil {
			return err
		}
		if err := appendEvent(tx, "code.reissued", "incidents/"+incidentID+"/subjects/"+externalRef, incidentID, inc.PartnerID, 1, now); err != nil {
			return err
		}
		out = bRow.toDomain()
		return nil
	})
	return out, err
}

// RecordResendRequest writes one row whether or not the identity matches, after the same
// single lookup, so the two outcomes look and cost the same from outside.
func (s *Store) RecordResendRequest(ctx context.Context, identityKey []byte, now time.Time) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		var ids []int64
		err := tx.Model(&subjectRow{}).Where("identity_key = ?", identityKey).
			Where("EXISTS (SELECT 1 FROM codes c WHERE c.live_subject_id = subjects.id AND c.state = ?)", string(enrollment.CodeIssued)).
			Order("id").Limit(1).Pluck("id", &ids).Error
		if err != nil {
			return err
		}
		row := resendRow{RequestTime: now}
		if len(ids) == 1 {
			row.SubjectID = &ids[0]
		}
		return tx.Create(&row).Error
	})
}
