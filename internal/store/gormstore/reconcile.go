package gormstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
)

// Invoice reconciliation stages a vendor's invoice in the database and compares it with the
// billable set there, so that an invoice of any size is compared in flat memory: the lines go
// in a chunk at a time, and both differences come out of anti-joins a page at a time.

// reconcileRunRow registers a reconciliation in progress; a run older than any call can last
// was left behind by a crash and is purged with its lines.
type reconcileRunRow struct {
	ID         string    `gorm:"primaryKey;size:40"`
	CreateTime time.Time `gorm:"not null;index"`
}

func (reconcileRunRow) TableName() string { return "reconcile_runs" }

// invoiceLineRow is one staged invoice line.
type invoiceLineRow struct {
	RunID string `gorm:"primaryKey;size:40;index:invoice_lines_match,priority:1"`
	Line  int64  `gorm:"primaryKey;autoIncrement:false;index:invoice_lines_match,priority:3"`
	// Kind is lineMember or lineEnrollment: what Value is.
	Kind  string `gorm:"size:1;not null"`
	Value string `gorm:"size:128;not null"`
	// MatchKey is the id of the enrollment the line names (resolved when staged), or
	// kind:value when it names none: two lines with one key bill one thing twice, and the
	// anti-join for billable-not-billed looks enrollment ids up here (ids never hold ':').
	MatchKey string `gorm:"size:132;not null;index:invoice_lines_match,priority:2"`
}

func (invoiceLineRow) TableName() string { return "invoice_lines" }

const (
	lineMember     = "m"
	lineEnrollment = "e"
	// inChunk bounds the values of one IN list (SQLite and PostgreSQL bind-parameter limits).
	inChunk = 1000
	// deleteChunk is how many staged lines one delete transaction removes.
	deleteChunk = 5000
	// scanWindow is how many staged lines one listing query reads.
	scanWindow = 2000
)

// CreateReconcileRun registers a run.
func (s *Store) CreateReconcileRun(ctx context.Context, runID string, now time.Time) error {
	err := s.db.WithContext(ctx).Create(&reconcileRunRow{ID: runID, CreateTime: now.UTC()}).Error
	if isDuplicate(err) {
		return enrollment.AlreadyExistsf("reconciliation run %s already exists", runID)
	}
	return err
}

// StageInvoiceLines resolves a chunk of lines (reads, outside the write transaction) and then
// inserts it in one short transaction.
func (s *Store) StageInvoiceLines(ctx context.Context, runID, partnerID string, lines []store.InvoiceLine) error {
	if len(lines) == 0 {
		return nil
	}
	db := s.db.WithContext(ctx)
	var enrollmentIDs, memberIDs []string
	for _, l := range lines {
		if l.EnrollmentID != "" {
			enrollmentIDs = append(enrollmentIDs, l.EnrollmentID)
		} else {
			memberIDs = append(memberIDs, l.MemberID)
		}
	}
	knownIDs := map[string]bool{}
	err := inChunks(enrollmentIDs, func(ids []string) error {
		var found []string
		if err := db.Model(&enrollmentRow{}).Where("id IN ?", ids).Pluck("id", &found).Error; err != nil {
			return err
		}
		for _, id := range found {
			knownIDs[id] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to resolve enrollment ids: %w", err)
	}
	members, err := s.resolveMembers(db, partnerID, memberIDs)
	if err != nil {
		return fmt.Errorf("failed to resolve member ids: %w", err)
	}
	rows := make([]invoiceLineRow, len(lines))
	for i, l := range lines {
		r := invoiceLineRow{RunID: runID, Line: l.Line, Kind: lineMember, Value: l.MemberID}
		if l.EnrollmentID != "" {
			r.Kind, r.Value = lineEnrollment, l.EnrollmentID
		}
		switch {
		case r.Kind == lineEnrollment && knownIDs[r.Value]:
			r.MatchKey = r.Value
		case r.Kind == lineMember && members[r.Value] != "":
			r.MatchKey = members[r.Value]
		default:
			r.MatchKey = r.Kind + ":" + r.Value
		}
		rows[i] = r
	}
	err = s.bulkTx(ctx, func(tx *gorm.DB) error { return s.insertInvoiceLines(tx, rows) })
	if isDuplicate(err) {
		return enrollment.AlreadyExistsf("an invoice line number was sent twice")
	}
	return err
}

var invoiceLineColumns = []string{"run_id", "line", "kind", "value", "match_key"}

// invoiceInsertRows is how many rows one multi-row INSERT carries (5 parameters each).
const invoiceInsertRows = 400

// insertInvoiceLines writes staged lines: COPY on PostgreSQL (inside a bulkTx), multi-row
// INSERT statements elsewhere, as insertCodes does; gorm's Create, reflecting over every row,
// was most of the time of staging a large invoice.
func (s *Store) insertInvoiceLines(tx *gorm.DB, rows []invoiceLineRow) error {
	return s.bulkInsert(tx, "invoice_lines", invoiceLineColumns, invoiceInsertRows, len(rows), func(i int) []any {
		r := &rows[i]
		return []any{r.RunID, r.Line, r.Kind, r.Value, r.MatchKey}
	})
}

// resolveMembers maps member ids to enrollment ids: the partner's own enrollment if it has
// one, else another partner's (member ids are unique per partner only; partners are few, and
// asking each by its (partner_id, member_id) index beats a scan on member_id alone).
func (s *Store) resolveMembers(db *gorm.DB, partnerID string, memberIDs []string) (map[string]string, error) {
	out := map[string]string{}
	if len(memberIDs) == 0 {
		return out, nil
	}
	var others []string
	if err := db.Model(&partnerRow{}).Where("id <> ?", partnerID).Order("id").Pluck("id", &others).Error; err != nil {
		return nil, err
	}
	pending := memberIDs
	for _, p := range append([]string{partnerID}, others...) {
		if len(pending) == 0 {
			break
		}
		err := inChunks(pending, func(ids []string) error {
			var found []struct{ ID, MemberID string }
			err := db.Model(&enrollmentRow{}).Select("id, member_id").Where("partner_id = ? AND member_id IN ?", p, ids).Scan(&found).Error
			for _, f := range found {
				out[f.MemberID] = f.ID
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		next := pending[:0:0]
		for _, m := range pending {
			if out[m] == "" {
				next = append(next, m)
			}
		}
		pending = next
	}
	return out, nil
}

func inChunks(values []string, fn func([]string) error) error {
	for len(values) > 0 {
		n := min(len(values), inChunk)
		if err := fn(values[:n]); err != nil {
			return err
		}
		values = values[n:]
	}
	return nil
}

// lineReason is the SQL for why staged line s (joined to its enrollment e, if any) is not
// billable to a partner in [start, end), or the empty string if it is; its parameters are
// reasonArgs. Past the first three branches it is billable() spelled out case by case, so the
// matched lines are exactly the billable enrollments the invoice names.
const lineReason = `CASE
	WHEN EXISTS (SELECT 1 FROM invoice_lines d WHERE d.run_id = s.run_id AND d.match_key = s.match_key AND d.line < s.line) THEN 'DUPLICATE'
	WHEN e.id IS NULL THEN 'UNKNOWN'
	WHEN e.partner_id <> ? THEN 'OTHER_PARTNER'
	WHEN e.activate_time IS NULL THEN 'NEVER_ACTIVATED'
	WHEN e.activate_time >= ? THEN 'NOT_STARTED'
	WHEN COALESCE(e.cancel_time, e.coverage_end) > ? THEN ''
	ELSE 'ENDED_BEFORE_MONTH'
END`

func reasonArgs(partnerID string, start, end time.Time) []any {
	return []any{partnerID, end, start}
}

// CountReconcileRun counts the run's lines by reason and the billable enrollments no line
// names.
func (s *Store) CountReconcileRun(ctx context.Context, runID, partnerID string, start, end time.Time) (*store.ReconcileCounts, error) {
	db := s.db.WithContext(ctx)
	// PostgreSQL plans by table statistics. If autovacuum last analyzed invoice_lines while it
	// was nearly empty, the planner takes a staged invoice for a handful of rows and probes it
	// with sequential scans: the comparison turns quadratic (over a minute for 12,000 lines).
	// ANALYZE samples a bounded number of rows, so it is cheap at any size.
	if s.driver == DriverPostgres {
		if err := db.Exec("ANALYZE invoice_lines").Error; err != nil {
			return nil, fmt.Errorf("failed to analyze the staged invoice: %w", err)
		}
	}
	var groups []struct {
		Reason string
		N      int64
	}
	q := `SELECT r.reason AS reason, COUNT(*) AS n FROM (
		SELECT ` + lineReason + ` AS reason
		FROM invoice_lines s LEFT JOIN enrollments e ON e.id = s.match_key
		WHERE s.run_id = ?
	) r GROUP BY r.reason`
	if err := db.Raw(q, append(reasonArgs(partnerID, start, end), runID)...).Scan(&groups).Error; err != nil {
		return nil, err
	}
	out := &store.ReconcileCounts{Lines: map[store.NotBillableReason]int64{}}
	for _, g := range groups {
		out.Lines[store.NotBillableReason(g.Reason)] = g.N
	}
	if err := notBilled(db, runID, partnerID, start, end).Count(&out.BillableNotBilled).Error; err != nil {
		return nil, err
	}
	return out, nil
}

// ListBilledNotBillable pages through the lines that are not billable, by line. It reads the
// staged lines a window at a time by primary key and keeps the differences, so each query's
// work is bounded by the window however sparse the differences are (a "next N differences"
// query may have to evaluate every remaining line before its LIMIT applies).
func (s *Store) ListBilledNotBillable(ctx context.Context, runID, partnerID string, start, end time.Time, afterLine int64, limit int) ([]store.BilledNotBillable, error) {
	q := `SELECT s.line AS line, s.kind AS kind, s.value AS value, e.id AS resolved_id,
			(SELECT MIN(d.line) FROM invoice_lines d WHERE d.run_id = s.run_id AND d.match_key = s.match_key AND d.line < s.line) AS first_line,
			` + lineReason + ` AS reason
		FROM (SELECT run_id, line, kind, value, match_key FROM invoice_lines WHERE run_id = ? AND line > ? ORDER BY line LIMIT ?) s
		LEFT JOIN enrollments e ON e.id = s.match_key
		ORDER BY s.line`
	var out []store.BilledNotBillable
	for len(out) < limit {
		var rows []struct {
			Line       int64
			Kind       string
			Value      string
			ResolvedID *string
			FirstLine  *int64
			Reason     string
		}
		args := append(reasonArgs(partnerID, start, end), runID, afterLine, scanWindow)
		if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
			return nil, err
		}
		for _, r := range rows {
			if r.Reason == string(store.ReasonNone) || len(out) == limit {
				continue
			}
			b := store.BilledNotBillable{InvoiceLine: store.InvoiceLine{Line: r.Line}, Reason: store.NotBillableReason(r.Reason)}
			if r.Kind == lineEnrollment {
				b.EnrollmentID = r.Value
			} else {
				b.MemberID = r.Value
			}
			if r.ResolvedID != nil {
				b.ResolvedID = *r.ResolvedID
			}
			if r.FirstLine != nil {
				b.FirstLine = *r.FirstLine
			}
			out = append(out, b)
		}
		if len(rows) < scanWindow {
			break
		}
		afterLine = rows[len(rows)-1].Line
	}
	return out, nil
}

// notBilled is the anti-join: the partner's billable enrollments that no staged line names.
func notBilled(db *gorm.DB, runID, partnerID string, start, end time.Time) *gorm.DB {
	return billable(db, partnerID, start, end).
		Where("NOT EXISTS (SELECT 1 FROM invoice_lines s WHERE s.run_id = ? AND s.match_key = enrollments.id)", runID)
}

// ListBillableNotBilled pages through the billable enrollments no line names, by id.
func (s *Store) ListBillableNotBilled(ctx context.Context, runID, partnerID string, start, end time.Time, after string, limit int) ([]store.BillableEnrollment, error) {
	var rows []enrollmentRow
	err := notBilled(s.db.WithContext(ctx), runID, partnerID, start, end).Where("id > ?", after).Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make([]store.BillableEnrollment, len(rows))
	for i := range rows {
		e := rows[i].toDomain()
		out[i] = store.BillableEnrollment{EnrollmentID: e.ID, MemberID: e.MemberID, IncidentID: e.IncidentID, ActivateTime: e.ActivateTime, EndTime: e.CancelTime}
		if e.CancelTime.IsZero() {
			out[i].EndTime = e.CoverageEnd
		}
	}
	return out, nil
}

// DeleteReconcileRun deletes the run's lines a range of lines per transaction, then the run.
// Each range is found and deleted by primary key from where the last one ended, so the work
// stays linear however many lines there are.
func (s *Store) DeleteReconcileRun(ctx context.Context, runID string) error {
	db := s.db.WithContext(ctx)
	after := int64(math.MinInt64)
	for {
		var upper *int64
		err := db.Raw(`SELECT MAX(line) FROM (SELECT line FROM invoice_lines WHERE run_id = ? AND line > ? ORDER BY line LIMIT ?) w`,
			runID, after, deleteChunk).Scan(&upper).Error
		if err != nil {
			return fmt.Errorf("failed to find staged invoice lines: %w", err)
		}
		if upper == nil {
			break
		}
		if err := db.Exec("DELETE FROM invoice_lines WHERE run_id = ? AND line > ? AND line <= ?", runID, after, *upper).Error; err != nil {
			return fmt.Errorf("failed to delete staged invoice lines: %w", err)
		}
		after = *upper
	}
	return db.Where("id = ?", runID).Delete(&reconcileRunRow{}).Error
}

// PurgeReconcileRuns deletes the runs created before before.
func (s *Store) PurgeReconcileRuns(ctx context.Context, before time.Time) (int, error) {
	var ids []string
	if err := s.db.WithContext(ctx).Model(&reconcileRunRow{}).Where("create_time < ?", before.UTC()).Order("id").Pluck("id", &ids).Error; err != nil {
		return 0, err
	}
	for i, id := range ids {
		if err := s.DeleteReconcileRun(ctx, id); err != nil {
			return i, err
		}
	}
	return len(ids), nil
}
