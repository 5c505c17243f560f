package gormstore

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
)

// CreateBatch stores a RUNNING batch; its total is the cohort's members without a code.
func (s *Store) CreateBatch(ctx context.Context, b *enrollment.Batch) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		var cohort cohortRow
		if err := tx.Where("incident_id = ? AND id = ?", b.IncidentID, b.CohortID).Take(&cohort).Error; err != nil {
			if isNotFound(err) {
				return enrollment.NotFoundf("cohort %q not found in incident %q", b.CohortID, b.IncidentID)
			}
			return err
		}
		if !cohort.OfferApplies {
			return enrollment.FailedPreconditionf("cohort %q is not offered protection (offer_applies is false); no codes are issued for it", b.CohortID)
		}
		var total int64
		err := tx.Model(&membershipRow{}).
			Where("incident_id = ? AND cohort_id = ?", b.IncidentID, b.CohortID).
			Where("NOT EXISTS (SELECT 1 FROM codes c WHERE c.subject_id = subject_cohorts.subject_id)").
			Count(&total).Error
		if err != nil {
			return err
		}
		b.Total = total
		row := batchRow{
			ID: b.ID, IncidentID: b.IncidentID, CohortID: b.CohortID, State: string(enrollment.BatchRunning),
			Total: total, RedeemBy: b.RedeemBy, Creator: b.Creator, CreateTime: b.CreateTime,
			UpdateTime: b.CreateTime, WrappedSecret: b.WrappedSecret, MasterKeyID: b.MasterKeyID, LeaseUntil: b.CreateTime,
			LookupKeyID: b.LookupKeyID,
		}
		if err := tx.Create(&row).Error; err != nil {
			if isDuplicate(err) {
				return enrollment.AlreadyExistsf("batch %q already exists", b.ID)
			}
			return err
		}
		return appendEvent(tx, "batch.started", "batches/"+b.ID, b.IncidentID, "", total, b.CreateTime)
	})
}

// GetBatch returns a batch.
func (s *Store) GetBatch(ctx context.Context, id string) (*enrollment.Batch, error) {
	var row batchRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		if isNotFound(err) {
			return nil, enrollment.NotFoundf("batch %q not found", id)
		}
		return nil, err
	}
	return row.toDomain(), nil
}

func (r *batchRow) toDomain() *enrollment.Batch {
	return &enrollment.Batch{
		ID: r.ID, IncidentID: r.IncidentID, CohortID: r.CohortID, State: enrollment.BatchState(r.State),
		Total: r.Total, Issued: r.Issued, RedeemBy: r.RedeemBy.UTC(), Creator: r.Creator,
		CreateTime: r.CreateTime.UTC(), UpdateTime: r.UpdateTime.UTC(), WrappedSecret: r.WrappedSecret,
		MasterKeyID: r.MasterKeyID, LookupKeyID: r.LookupKeyID, Error: r.Error,
		LeaseOwner: r.LeaseOwner, LeaseUntil: r.LeaseUntil.UTC(),
	}
}

// IssueNext issues the next chunk of codes of a batch. The batch cursor, its issued count,
// its lease and the counters move in the same transaction as the code rows, so a crash
// between chunks loses nothing and repeats nothing.
func (s *Store) IssueNext(ctx context.Context, batchID string, lease store.Lease, limit int, now time.Time, mint store.MintFunc) (int, error) {
	for {
		issued, more, err := s.issueNext(ctx, batchID, lease, limit, now, mint, false)
		if isDuplicate(err) {
			// A code HMAC collided with an existing one (p ≈ 3e-8 over 50M codes) or a
			// concurrent writer got there first. Redo the chunk with an explicit collision
			// check, which resolves HMAC collisions deterministically by attempt number.
			issued, more, err = s.issueNext(ctx, batchID, lease, limit, now, mint, true)
		}
		// more: a long run of members who all had codes already was skipped in its own
		// transaction; go on from there.
		if err != nil || issued > 0 || !more {
			return issued, err
		}
	}
}

// scanRounds bounds the members one issuance transaction looks at (scanRounds × limit), so a
// cohort whose members mostly got their codes in another cohort's batch is skipped in short
// transactions rather than one that holds the write lock for minutes.
const scanRounds = 20

func (s *Store) issueNext(ctx context.Context, batchID string, lease store.Lease, limit int, now time.Time, mint store.MintFunc, checkCollisions bool) (int, bool, error) {
	issued, more := 0, false
	err := s.bulkTx(ctx, func(tx *gorm.DB) error {
		issued, more = 0, false
		if err := s.lockIssuance(tx, batchID); err != nil {
			return err
		}
		var b batchRow
		if err := tx.Where("id = ?", batchID).Take(&b).Error; err != nil {
			if isNotFound(err) {
				return enrollment.NotFoundf("batch %q not found", batchID)
			}
			return err
		}
		if b.State != string(enrollment.BatchRunning) {
			return nil
		}
		if b.LeaseOwner != "" && b.LeaseOwner != lease.Owner && now.Before(b.LeaseUntil) {
			return enrollment.FailedPreconditionf("batch %s is being issued by %s until %s", batchID, b.LeaseOwner, b.LeaseUntil.UTC().Format(time.RFC3339))
		}
		subjectIDs, cursor, err := s.nextWithoutCode(tx, &b, limit)
		if err != nil {
			return err
		}
		progress := map[string]any{"lease_owner": lease.Owner, "lease_until": lease.Until, "update_time": now}
		if len(subjectIDs) == 0 {
			if cursor != b.ScanCursor {
				progress["scan_cursor"] = cursor
				more = true
			}
			return tx.Model(&batchRow{}).Where("id = ?", b.ID).Updates(progress).Error
		}
		rows, err := mintRows(tx, subjectIDs, mint, checkCollisions)
		if err != nil {
			return err
		}
		if err := s.insertCodes(tx, &b, rows, now); err != nil {
			return err
		}
		n := int64(len(rows))
		progress["issued"] = gorm.Expr("issued + ?", n)
		progress["scan_cursor"] = cursor
		if err := tx.Model(&batchRow{}).Where("id = ?", b.ID).Updates(progress).Error; err != nil {
			return err
		}
		d := deltas{}
		d.add(b.IncidentID, b.CohortID, enrollment.CountCodes, string(enrollment.CodeIssued), n, now)
		issued = len(rows)
		return d.apply(tx)
	})
	return issued, more, err
}

// nextWithoutCode returns up to limit members of the batch's cohort after its cursor that have
// no code yet (a member of two cohorts may have had one from the other cohort's batch), and
// the cursor to store: the last member looked at. It looks at no more than scanRounds × limit
// members; none returned with a moved cursor means "none yet", with the same cursor "none
// left". It reads the members in subject order, then asks which of them have a code: two
// index range scans. As one NOT EXISTS anti-join,
// PostgreSQL's planner chose to hash the whole codes table for every chunk (380 ms per
// 5,000-code chunk at 5M codes, measured), so issuance slowed down as it went.
func (s *Store) nextWithoutCode(tx *gorm.DB, b *batchRow, limit int) ([]int64, int64, error) {
	cursor := b.ScanCursor
	for range scanRounds {
		var members []int64
		err := tx.Model(&membershipRow{}).
			Where("incident_id = ? AND cohort_id = ? AND subject_id > ?", b.IncidentID, b.CohortID, cursor).
			Order("subject_id").Limit(limit).Pluck("subject_id", &members).Error
		if err != nil || len(members) == 0 {
			return nil, cursor, err
		}
		cursor = members[len(members)-1]
		coded, err := findIn[int64](s, tx, "SELECT subject_id FROM codes WHERE incident_id = ", b.IncidentID, "subject_id", members)
		if err != nil {
			return nil, cursor, err
		}
		if len(coded) == 0 {
			return members, cursor, nil
		}
		has := make(map[int64]bool, len(coded))
		for _, id := range coded {
			has[id] = true
		}
		without := members[:0]
		for _, id := range members {
			if !has[id] {
				without = append(without, id)
			}
		}
		if len(without) > 0 {
			return without, cursor, nil
		}
	}
	return nil, cursor, nil
}

// mintRows derives a code HMAC per subject. Within the chunk, a repeated HMAC moves to the
// next attempt number (which the export re-derives from the stored attempt). With
// checkCollisions it also looks the HMACs up in the table and moves the taken ones on.
func mintRows(tx *gorm.DB, subjectIDs []int64, mint store.MintFunc, checkCollisions bool) ([]codeRow, error) {
	rows := make([]codeRow, len(subjectIDs))
	seen := make(map[string]bool, len(subjectIDs))
	for i, sid := range subjectIDs {
		rows[i] = codeRow{SubjectID: sid}
		for {
			h, kid := mint(sid, rows[i].Attempt)
			if !seen[string(h)] {
				rows[i].CodeHMAC, rows[i].KeyID = h, kid
				seen[string(h)] = true
				break
			}
			rows[i].Attempt++
		}
	}
	for checkCollisions {
		hmacs := make([][]byte, len(rows))
		for i := range rows {
			hmacs[i] = rows[i].CodeHMAC
		}
		taken := map[string]bool{}
		for _, part := range chunk(len(hmacs), 500) {
			var got [][]byte
			if err := tx.Model(&codeRow{}).Where("code_hmac IN ?", hmacs[part[0]:part[1]]).Pluck("code_hmac", &got).Error; err != nil {
				return nil, err
			}
			for _, h := range got {
				taken[string(h)] = true
			}
		}
		if len(taken) == 0 {
			break
		}
		for i := range rows {
			for taken[string(rows[i].CodeHMAC)] {
				rows[i].Attempt++
				h, kid := mint(rows[i].SubjectID, rows[i].Attempt)
				rows[i].CodeHMAC, rows[i].KeyID = h, kid
			}
		}
	}
	return rows, nil
}

// ListBatches pages through batches, newest first.
func (s *Store) ListBatches(ctx context.Context, incidentID, before string, limit int) ([]*enrollment.Batch, error) {
	q := s.db.WithContext(ctx).Order("id DESC").Limit(limit)
	if incidentID != "" {
		q = q.Where("incident_id = ?", incidentID)
	}
	if before != "" {
		q = q.Where("id < ?", before)
	}
	var rows []batchRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]*enrollment.Batch, len(rows))
	for i := range rows {
		out[i] = rows[i].toDomain()
	}
	return out, nil
}

// NextRunnableBatch finds a RUNNING batch that owner may work on.
func (s *Store) NextRunnableBatch(ctx context.Context, owner string, now time.Time) (*enrollment.Batch, error) {
	var row batchRow
	err := s.db.WithContext(ctx).
		Where("state = ? AND (lease_owner = '' OR lease_owner = ? OR lease_until < ?)", string(enrollment.BatchRunning), owner, now).
		Order("id").Take(&row).Error
	if err != nil {
		if isNotFound(err) {
			return nil, enrollment.NotFoundf("no runnable batch")
		}
		return nil, err
	}
	return row.toDomain(), nil
}

// FinishBatch records the final state and a summarised event.
func (s *Store) FinishBatch(ctx context.Context, batchID string, state enrollment.BatchState, errMsg string, now time.Time) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		var b batchRow
		if err := tx.Where("id = ?", batchID).Take(&b).Error; err != nil {
			if isNotFound(err) {
				return enrollment.NotFoundf("batch %q not found", batchID)
			}
			return err
		}
		upd := map[string]any{"state": string(state), "error": errMsg, "update_time": now, "lease_owner": ""}
		if state == enrollment.BatchSucceeded {
			// Members who got their code from an overlapping cohort's batch in the meantime
			// were in scope at the start but not issued here: the final total is what was.
			upd["total"] = b.Issued
		}
		err := tx.Model(&batchRow{}).Where("id = ?", batchID).Updates(upd).Error
		if err != nil {
			return err
		}
		return appendEvent(tx, "batch."+string(state), "batches/"+batchID, b.IncidentID, "", b.Issued, now)
	})
}

// ListBatchCodes pages through a batch's codes for the export.
func (s *Store) ListBatchCodes(ctx context.Context, batchID string, afterID int64, limit int) ([]store.BatchCode, error) {
	var rows []struct {
		ID          int64
		SubjectID   int64
		Attempt     uint32
		ExternalRef string
		CohortID    string
		CodeHMAC    []byte
		KeyID       string
		RedeemBy    time.Time
	}
	err := s.db.WithContext(ctx).Table("codes").
		Select("codes.id, codes.subject_id, codes.attempt, subjects.external_ref, codes.cohort_id, codes.code_hmac, codes.key_id, codes.redeem_by").
		Joins("JOIN subjects ON subjects.id = codes.subject_id").
		Where("codes.batch_id = ? AND codes.id > ?", batchID, afterID).
		Order("codes.id").Limit(limit).Scan(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make([]store.BatchCode, len(rows))
	for i, r := range rows {
		out[i] = store.BatchCode{CodeID: r.ID, SubjectID: r.SubjectID, Attempt: r.Attempt, ExternalRef: r.ExternalRef,
			CohortID: r.CohortID, HMAC: r.CodeHMAC, KeyID: r.KeyID, RedeemBy: r.RedeemBy.UTC()}
	}
	return out, nil
}

// PurgeBatchSecret destroys the wrapped batch secret.
func (s *Store) PurgeBatchSecret(ctx context.Context, batchID string, now time.Time) (*enrollment.Batch, error) {
	var out *enrollment.Batch
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var b batchRow
		if err := tx.Where("id = ?", batchID).Take(&b).Error; err != nil {
			if isNotFound(err) {
				return enrollment.NotFoundf("batch %q not found", batchID)
			}
			return err
		}
		if b.State == string(enrollment.BatchRunning) {
			return enrollment.FailedPreconditionf("batch %s is still issuing codes; purge its export once it has finished", batchID)
		}
		if b.WrappedSecret != nil {
			err := tx.Model(&batchRow{}).Where("id = ?", batchID).
				Updates(map[string]any{"wrapped_secret": nil, "update_time": now}).Error
			if err != nil {
				return err
			}
			if err := appendEvent(tx, "batch.export_purged", "batches/"+batchID, b.IncidentID, "", b.Issued, now); err != nil {
				return err
			}
			b.WrappedSecret = nil
			b.UpdateTime = now
		}
		out = b.toDomain()
		return nil
	})
	return out, err
}
