package gormstore

import (
	"context"
	"fmt"
	"sort"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/idprotect/enroll/internal/enrollment"
)

type counterKey struct {
	incident, cohort string
	kind             enrollment.CounterKind
	state            string
}

// deltas collects counter changes of one transaction.
type deltas map[counterKey]int64

func (d deltas) add(incident, cohort string, kind enrollment.CounterKind, state string, n int64) {
	d[counterKey{incident, cohort, kind, state}] += n
}

// move records one row of kind leaving from and entering to.
func (d deltas) move(incident, cohort string, kind enrollment.CounterKind, from, to string) {
	d.add(incident, cohort, kind, from, -1)
	d.add(incident, cohort, kind, to, 1)
}

// apply upserts the counters with n = n + delta, in a fixed key order so that concurrent
// transactions on PostgreSQL lock counter rows in the same order and cannot deadlock.
func (d deltas) apply(tx *gorm.DB) error {
	keys := make([]counterKey, 0, len(d))
	for k, n := range d {
		if n != 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.incident != b.incident {
			return a.incident < b.incident
		}
		if a.cohort != b.cohort {
			return a.cohort < b.cohort
		}
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		return a.state < b.state
	})
	for _, k := range keys {
		row := counterRow{IncidentID: k.incident, CohortID: k.cohort, Kind: string(k.kind), State: k.state, N: d[k]}
		err := tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "incident_id"}, {Name: "cohort_id"}, {Name: "kind"}, {Name: "state"}},
			DoUpdates: clause.Assignments(map[string]any{"n": gorm.Expr("counters.n + excluded.n")}),
		}).Create(&row).Error
		if err != nil {
			return err
		}
	}
	return nil
}

// appendEvent records a state change. count > 1 summarises a bulk transition. An event of a
// partner takes the partner's next sequence number in the same transaction: the upsert on
// the partner's row serialises its writers, so numbers are gap-free and commit in order.
func appendEvent(tx *gorm.DB, typ, resource, incidentID, partnerID string, count int64, now time.Time) error {
	ev := eventRow{Type: typ, Resource: resource, IncidentID: incidentID, PartnerID: partnerID, Count: count, Time: now}
	if partnerID != "" {
		var seq int64
		err := tx.Raw(`INSERT INTO partner_sequences (partner_id, last_seq) VALUES (?, 1)
			ON CONFLICT (partner_id) DO UPDATE SET last_seq = partner_sequences.last_seq + 1
			RETURNING last_seq`, partnerID).Scan(&seq).Error
		if err != nil {
			return fmt.Errorf("failed to number the event: %w", err)
		}
		ev.PartnerSeq = &seq
	}
	return tx.Create(&ev).Error
}

// Counters returns the counter rows of an incident.
func (s *Store) Counters(ctx context.Context, incidentID string) ([]enrollment.CounterRow, error) {
	var rows []counterRow
	if err := s.db.WithContext(ctx).Where("incident_id = ?", incidentID).
		Order("cohort_id, kind, state").Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]enrollment.CounterRow, 0, len(rows))
	for _, r := range rows {
		if r.N != 0 {
			out = append(out, enrollment.CounterRow{IncidentID: r.IncidentID, CohortID: r.CohortID, Kind: enrollment.CounterKind(r.Kind), State: r.State, N: r.N})
		}
	}
	return out, nil
}

// Recount recomputes what the counters should say from the rows they count.
func (s *Store) Recount(ctx context.Context, incidentID string) ([]enrollment.CounterRow, error) {
	return recount(s.db.WithContext(ctx), incidentID)
}

func recount(db *gorm.DB, incidentID string) ([]enrollment.CounterRow, error) {
	type agg struct {
		CohortID string
		State    string
		N        int64
	}
	var out []enrollment.CounterRow
	for _, src := range []struct {
		kind  enrollment.CounterKind
		model any
	}{{enrollment.CountCodes, &codeRow{}}, {enrollment.CountEnrollments, &enrollmentRow{}}} {
		var rows []agg
		err := db.Model(src.model).Select("cohort_id, state, COUNT(*) AS n").
			Where("incident_id = ?", incidentID).Group("cohort_id, state").Find(&rows).Error
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			out = append(out, enrollment.CounterRow{IncidentID: incidentID, CohortID: r.CohortID, Kind: src.kind, State: r.State, N: r.N})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.CohortID != b.CohortID {
			return a.CohortID < b.CohortID
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.State < b.State
	})
	return out, nil
}
