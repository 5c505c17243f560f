package gormstore

import (
	"context"

	"github.com/idprotect/enroll/internal/enrollment"
)

// ListPartnerEvents returns up to limit events of a partner with sequence > after, in order.
func (s *Store) ListPartnerEvents(ctx context.Context, partnerID string, after int64, limit int) ([]enrollment.Event, error) {
	var rows []eventRow
	err := s.db.WithContext(ctx).Where("partner_id = ? AND partner_seq > ?", partnerID, after).
		Order("partner_seq").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make([]enrollment.Event, len(rows))
	for i, r := range rows {
		out[i] = enrollment.Event{Sequence: *r.PartnerSeq, Type: r.Type, Resource: r.Resource, IncidentID: r.IncidentID, PartnerID: r.PartnerID, Count: r.Count, Time: r.Time.UTC()}
	}
	return out, nil
}
