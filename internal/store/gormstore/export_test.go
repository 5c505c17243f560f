package gormstore

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/enrollment"
)

// ApplySpreadDeltas applies, in one transaction, one code expiring on each of days
// consecutive days from start: 1 gauge row and days daily rows in one deltas.apply.
func ApplySpreadDeltas(ctx context.Context, s *Store, incident, cohort string, start time.Time, days int) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		d := deltas{}
		for i := range days {
			d.move(incident, cohort, enrollment.CountCodes, string(enrollment.CodeIssued), string(enrollment.CodeExpired), start.AddDate(0, 0, i))
		}
		return d.apply(tx)
	})
}
