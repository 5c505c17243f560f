package bench

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/idprotect/enroll/internal/enrollment"
)

// sqliteWriter inserts each chunk in one transaction with prepared multi-row INSERTs of
// perStmt rows (plus one statement for the remainder) per table.
type sqliteWriter struct {
	conn     *sql.Conn // one connection: SQLite has one writer anyway
	perStmt  int
	meta     rawCodeMeta
	args     []any
	stmtText map[string]string
}

func newSQLiteWriter(conn *sql.Conn, perStmt int, meta rawCodeMeta) *sqliteWriter {
	return &sqliteWriter{conn: conn, perStmt: perStmt, meta: meta, stmtText: map[string]string{}}
}

// multiInsert returns "INSERT INTO table (cols) VALUES (?,..),(?,..)" for rows rows.
func multiInsert(table string, cols []string, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(table)
	b.WriteString(" (")
	b.WriteString(strings.Join(cols, ", "))
	b.WriteString(") VALUES ")
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(tuple)
	}
	return b.String()
}

var (
	subjectCols = []string{"id", "incident_id", "external_ref", "identity_key", "cohort_id"}
	memberCols  = []string{"incident_id", "cohort_id", "subject_id"}
	codeCols    = []string{"code_hmac", "key_id", "incident_id", "cohort_id", "subject_id", "live_subject_id", "batch_id", "attempt", "state", "issue_time", "redeem_by", "revoke_reason"}
)

func (w *sqliteWriter) write(ctx context.Context, c *rawChunk) (err error) {
	tx, err := w.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	m := w.meta
	if err := w.insert(ctx, tx, "subjects", subjectCols, len(c.subjects), func(i int, a []any) []any {
		s := &c.subjects[i]
		return append(a, s.id, m.incident, s.ref, s.identityKey, s.cohort)
	}); err != nil {
		return err
	}
	if err := w.insert(ctx, tx, "subject_cohorts", memberCols, len(c.members), func(i int, a []any) []any {
		r := &c.members[i]
		return append(a, m.incident, r.cohort, r.subjectID)
	}); err != nil {
		return err
	}
	if err := w.insert(ctx, tx, "codes", codeCols, len(c.codes), func(i int, a []any) []any {
		r := &c.codes[i]
		return append(a, r.hmac, m.keyID, m.incident, r.cohort, r.subjectID, r.subjectID, batchIDFor(r.cohort),
			int64(0), string(enrollment.CodeIssued), m.issueTime, m.redeemBy, "")
	}); err != nil {
		return err
	}
	return tx.Commit()
}

// insert writes n rows of table: full statements of perStmt rows, prepared once per
// transaction and executed repeatedly, then one statement for the remainder.
func (w *sqliteWriter) insert(ctx context.Context, tx *sql.Tx, table string, cols []string, n int, row func(i int, a []any) []any) error {
	if n == 0 {
		return nil
	}
	full := n / w.perStmt * w.perStmt
	if full > 0 {
		st, err := tx.PrepareContext(ctx, w.text(table, cols, w.perStmt))
		if err != nil {
			return fmt.Errorf("prepare %s insert: %w", table, err)
		}
		for start := 0; start < full; start += w.perStmt {
			w.args = w.args[:0]
			for i := start; i < start+w.perStmt; i++ {
				w.args = row(i, w.args)
			}
			if _, err := st.ExecContext(ctx, w.args...); err != nil {
				st.Close()
				return fmt.Errorf("insert into %s: %w", table, err)
			}
		}
		st.Close()
	}
	if full < n {
		w.args = w.args[:0]
		for i := full; i < n; i++ {
			w.args = row(i, w.args)
		}
		if _, err := tx.ExecContext(ctx, w.text(table, cols, n-full), w.args...); err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
	}
	return nil
}

func (w *sqliteWriter) text(table string, cols []string, rows int) string {
	k := fmt.Sprintf("%s/%d", table, rows)
	s, ok := w.stmtText[k]
	if !ok {
		s = multiInsert(table, cols, rows)
		if rows == w.perStmt {
			w.stmtText[k] = s // remainders vary; keep only the full-size text
		}
	}
	return s
}
