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
	// day is "" for the state gauge (how many are in the state now) and YYYY-MM-DD for the
	// daily flow (how many entered the state on that UTC day).
	day string
}

// deltas collects counter changes of one transaction.
type deltas map[counterKey]int64

// add records n new rows of kind entering state at instant at.
func (d deltas) add(incident, cohort string, kind enrollment.CounterKind, state string, n int64, at time.Time) {
	d[counterKey{incident, cohort, kind, state, ""}] += n
	d[counterKey{incident, cohort, kind, state, dayOf(at)}] += n
}

// move records one row of kind leaving from and entering to at instant at. The instant is
// the transition's own (a deadline for expiries, not the sweep that recorded them), so the
// daily rows can be recounted exactly from the rows' timestamps.
func (d deltas) move(incident, cohort string, kind enrollment.CounterKind, from, to string, at time.Time) {
	d[counterKey{incident, cohort, kind, from, ""}]--
	d.add(incident, cohort, kind, to, 1, at)
}

func dayOf(t time.Time) string { return t.UTC().Format(time.DateOnly) }

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
		if a.state != b.state {
			return a.state < b.state
		}
		return a.day < b.day
	})
	// One multi-row upsert per table instead of one statement per key: a redemption touches
	// five counter rows, and on SQLite every statement runs under the single write lock. The
	// rows keep the sorted key order, and PostgreSQL takes their locks in that order.
	var gauges []counterRow
	var daily []dailyCounterRow
	for _, k := range keys {
		if k.day == "" {
			gauges = append(gauges, counterRow{IncidentID: k.incident, CohortID: k.cohort, Kind: string(k.kind), State: k.state, N: d[k]})
		} else {
			daily = append(daily, dailyCounterRow{IncidentID: k.incident, CohortID: k.cohort, Kind: string(k.kind), State: k.state, Day: k.day, N: d[k]})
		}
	}
	if len(gauges) > 0 {
		if err := tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "incident_id"}, {Name: "cohort_id"}, {Name: "kind"}, {Name: "state"}},
			DoUpdates: clause.Assignments(map[string]any{"n": gorm.Expr("counters.n + excluded.n")}),
		}).CreateInBatches(&gauges, counterBatch).Error; err != nil {
			return err
		}
	}
	if len(daily) > 0 {
		if err := tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "incident_id"}, {Name: "cohort_id"}, {Name: "kind"}, {Name: "state"}, {Name: "day"}},
			DoUpdates: clause.Assignments(map[string]any{"n": gorm.Expr("daily_counters.n + excluded.n")}),
		}).CreateInBatches(&daily, counterBatch).Error; err != nil {
			return err
		}
	}
	return nil
}

// counterBatch bounds the rows of one counter upsert: a sweep's deltas can span many days,
// and 6 bound parameters per row must stay under SQLite's limit of 32766.
const counterBatch = 1000

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

// StateCounters returns the state gauges of an incident.
func (s *Store) StateCounters(ctx context.Context, incidentID string) ([]enrollment.CounterRow, error) {
	var rows []counterRow
	if err := s.db.WithContext(ctx).Where("incident_id = ?", incidentID).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]enrollment.CounterRow, 0, len(rows))
	for _, r := range rows {
		if r.N != 0 {
			out = append(out, enrollment.CounterRow{IncidentID: r.IncidentID, CohortID: r.CohortID, Kind: enrollment.CounterKind(r.Kind), State: r.State, N: r.N})
		}
	}
	sortCounters(out)
	return out, nil
}

// Counters returns the counter rows of an incident: the state gauges, then the daily rows.
func (s *Store) Counters(ctx context.Context, incidentID string) ([]enrollment.CounterRow, error) {
	out, err := s.StateCounters(ctx, incidentID)
	if err != nil {
		return nil, err
	}
	var daily []dailyCounterRow
	if err := s.db.WithContext(ctx).Where("incident_id = ?", incidentID).Find(&daily).Error; err != nil {
		return nil, err
	}
	for _, r := range daily {
		if r.N != 0 {
			out = append(out, enrollment.CounterRow{IncidentID: r.IncidentID, CohortID: r.CohortID, Kind: enrollment.CounterKind(r.Kind), State: r.State, Day: r.Day, N: r.N})
		}
	}
	sortCounters(out)
	return out, nil
}

// Recount recomputes what the counters should say from the rows they count.
func (s *Store) Recount(ctx context.Context, incidentID string) ([]enrollment.CounterRow, error) {
	return s.recount(s.db.WithContext(ctx), incidentID)
}

// dailySources say, for each state, which timestamp is the day a row entered it: the
// transition's own instant, which the writers use for the daily deltas too.
var dailySources = []struct {
	kind  enrollment.CounterKind
	model any
	state string // "" = every row (it entered its first state at this instant)
	col   string
}{
	{enrollment.CountCodes, &codeRow{}, "", "issue_time"},
	{enrollment.CountCodes, &codeRow{}, string(enrollment.CodeRedeemed), "redeem_time"},
	{enrollment.CountCodes, &codeRow{}, string(enrollment.CodeRevoked), "revoke_time"},
	{enrollment.CountCodes, &codeRow{}, string(enrollment.CodeExpired), "redeem_by"},
	{enrollment.CountEnrollments, &enrollmentRow{}, "", "redeem_time"},
	{enrollment.CountEnrollments, &enrollmentRow{}, string(enrollment.EnrollmentActive), "activate_time"},
	{enrollment.CountEnrollments, &enrollmentRow{}, string(enrollment.EnrollmentCancelled), "cancel_time"},
	{enrollment.CountEnrollments, &enrollmentRow{}, string(enrollment.EnrollmentLapsed), "activation_deadline"},
	{enrollment.CountEnrollments, &enrollmentRow{}, string(enrollment.EnrollmentExpired), "coverage_end"},
}

func (s *Store) recount(db *gorm.DB, incidentID string) ([]enrollment.CounterRow, error) {
	type agg struct {
		CohortID string
		State    string
		Day      string
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
	for _, src := range dailySources {
		q := db.Model(src.model).Where("incident_id = ? AND "+src.col+" IS NOT NULL", incidentID)
		state := src.state
		if state == "" {
			state = string(enrollment.CodeIssued)
			if src.kind == enrollment.CountEnrollments {
				state = string(enrollment.EnrollmentPending)
			}
		} else if src.col != "redeem_time" && src.col != "activate_time" {
			// Revocation, expiry, cancellation and lapse are final: the row is still in the
			// state. Redemption and activation are not, so they count every row that passed.
			q = q.Where("state = ?", src.state)
		}
		var rows []agg
		day := s.dayExpr(src.col)
		if err := q.Select("cohort_id, " + day + " AS day, COUNT(*) AS n").Group("cohort_id, " + day).Find(&rows).Error; err != nil {
			return nil, err
		}
		for _, r := range rows {
			out = append(out, enrollment.CounterRow{IncidentID: incidentID, CohortID: r.CohortID, Kind: src.kind, State: state, Day: r.Day, N: r.N})
		}
	}
	sortCounters(out)
	return out, nil
}

// dayExpr is the UTC calendar day of a timestamp column as YYYY-MM-DD. SQLite keeps times as
// text in UTC (every writer passes UTC), so the day is the first ten characters.
func (s *Store) dayExpr(col string) string {
	if s.driver == DriverPostgres {
		return "to_char(" + col + " AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
	}
	return "substr(" + col + ", 1, 10)"
}

func sortCounters(out []enrollment.CounterRow) {
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.CohortID != b.CohortID {
			return a.CohortID < b.CohortID
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.State != b.State {
			return a.State < b.State
		}
		return a.Day < b.Day
	})
}
