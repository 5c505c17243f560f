package gormstore

import (
	"context"
	"time"

	"gorm.io/gorm/clause"

	"github.com/idprotect/enroll/internal/store"
)

// ReserveIdempotencyKey claims (scope, key) for a call about to run. If a record exists it is
// returned instead, unless it is a pending claim older than staleBefore (its caller died
// mid-call), which is taken over.
func (s *Store) ReserveIdempotencyKey(ctx context.Context, rec store.IdempotencyRecord, staleBefore time.Time) (*store.IdempotencyRecord, bool, error) {
	row := idempotencyRow{
		Scope: rec.Scope, Key: rec.Key, Method: rec.Method, RequestHash: rec.RequestHash,
		CreateTime: rec.CreateTime, ExpireTime: rec.ExpireTime,
	}
	res := s.db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&row)
	if res.Error != nil {
		return nil, false, res.Error
	}
	if res.RowsAffected == 1 {
		return nil, true, nil
	}
	var got idempotencyRow
	if err := s.db.WithContext(ctx).Where("scope = ? AND key = ?", rec.Scope, rec.Key).Take(&got).Error; err != nil {
		return nil, false, err
	}
	if !got.Done && got.CreateTime.Before(staleBefore) {
		take := s.db.WithContext(ctx).Model(&idempotencyRow{}).
			Where("scope = ? AND key = ? AND done = ? AND create_time = ?", rec.Scope, rec.Key, false, got.CreateTime).
			Updates(map[string]any{"method": rec.Method, "request_hash": rec.RequestHash, "create_time": rec.CreateTime, "expire_time": rec.ExpireTime})
		if take.Error != nil {
			return nil, false, take.Error
		}
		if take.RowsAffected == 1 {
			return nil, true, nil
		}
	}
	return &store.IdempotencyRecord{
		Scope: got.Scope, Key: got.Key, Method: got.Method, RequestHash: got.RequestHash, Done: got.Done,
		Response: got.Response, Code: got.Code, Message: got.Message, CreateTime: got.CreateTime.UTC(), ExpireTime: got.ExpireTime.UTC(),
	}, false, nil
}

// CompleteIdempotencyKey records the outcome of a reserved call.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, scope, key string, response []byte, code int, message string) error {
	return s.db.WithContext(ctx).Model(&idempotencyRow{}).Where("scope = ? AND key = ?", scope, key).
		Updates(map[string]any{"done": true, "response": response, "code": code, "message": message}).Error
}

// ReleaseIdempotencyKey forgets a pending claim whose outcome is not worth replaying (a
// transient failure), so a retry runs the call again.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, scope, key string) error {
	return s.db.WithContext(ctx).Where("scope = ? AND key = ? AND done = ?", scope, key, false).Delete(&idempotencyRow{}).Error
}

// PurgeIdempotencyKeys deletes records that expired before now.
func (s *Store) PurgeIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int, error) {
	var keys []idempotencyRow
	if err := s.db.WithContext(ctx).Select("scope, key").Where("expire_time < ?", now).Limit(limit).Find(&keys).Error; err != nil || len(keys) == 0 {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		res := s.db.WithContext(ctx).Where("scope = ? AND key = ? AND expire_time < ?", k.Scope, k.Key, now).Delete(&idempotencyRow{})
		if res.Error != nil {
			return n, res.Error
		}
		n += int(res.RowsAffected)
	}
	return n, nil
}
