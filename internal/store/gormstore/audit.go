package gormstore

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/audit"
)

// appendAudit adds one entry to the chain inside tx. The head row's update takes its row lock
// first, so concurrent writers queue and each links to the one before.
func appendAudit(tx *gorm.DB, in *audit.Intent, outcome string) error {
	// Taking the next number locks the head row until commit (one chain, one writer at a
	// time) and reads it in the same statement.
	var head auditHeadRow
	res := tx.Raw("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash").Scan(&head)
	if res.Error != nil {
		return fmt.Errorf("failed to lock the audit chain: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return fmt.Errorf("failed to read the audit chain head: %d rows", res.RowsAffected)
	}
	e := audit.Entry{
		Seq: head.Seq, Time: in.Time.UTC(), Actor: in.Actor, Role: in.Role, Action: in.Action,
		Resource: in.Resource, RequestID: in.RequestID, Outcome: outcome, PrevHash: head.Hash,
	}
	e.Hash = e.ComputeHash()
	row := auditRow{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Role: e.Role, Action: e.Action, Resource: e.Resource,
		RequestID: e.RequestID, Outcome: e.Outcome, PrevHash: e.PrevHash, Hash: e.Hash}
	if err := tx.Create(&row).Error; err != nil {
		return fmt.Errorf("failed to append the audit entry: %w", err)
	}
	return tx.Model(&auditHeadRow{}).Where("id = 1").Update("hash", e.Hash).Error
}

// AppendAudit records a call on its own: one that failed, or one that changed nothing.
func (s *Store) AppendAudit(ctx context.Context, in *audit.Intent, outcome string) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return appendAudit(tx, in, outcome) })
}

// ListAudit returns up to limit entries with seq > after, in order.
func (s *Store) ListAudit(ctx context.Context, after int64, limit int) ([]audit.Entry, error) {
	var rows []auditRow
	if err := s.db.WithContext(ctx).Where("seq > ?", after).Order("seq").Limit(limit).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]audit.Entry, len(rows))
	for i, r := range rows {
		out[i] = audit.Entry{Seq: r.Seq, Time: r.Time.UTC(), Actor: r.Actor, Role: r.Role, Action: r.Action, Resource: r.Resource,
			RequestID: r.RequestID, Outcome: r.Outcome, PrevHash: r.PrevHash, Hash: r.Hash}
	}
	return out, nil
}
