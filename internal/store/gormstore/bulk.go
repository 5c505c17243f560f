package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/enrollment"
)

// Bulk writes are the one place the engines really differ: SQLite is fastest with multi-row
// INSERT statements in a large transaction, PostgreSQL with COPY. COPY needs the pgx
// connection under database/sql, so a bulk transaction runs on a dedicated *sql.Conn: gorm
// drives the transaction on it as usual, and the COPY goes to the same session (and so into
// the same transaction) through Conn.Raw.

type bulkTxKey struct{}

// bulkTx runs fn in a transaction on a dedicated connection whose handle insertCodes can
// reach through the context.
func (s *Store) bulkTx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if s.driver != DriverPostgres {
		return busy(s.bulk.WithContext(ctx).Transaction(withAudit(ctx, fn)))
	}
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx = context.WithValue(ctx, bulkTxKey{}, conn)
	db := s.db.Session(&gorm.Session{NewDB: true, Context: ctx})
	db.Statement.ConnPool = conn
	return db.Transaction(withAudit(ctx, fn))
}

var codeColumns = []string{"code_hmac", "key_id", "incident_id", "cohort_id", "subject_id", "live_subject_id", "batch_id", "attempt", "state", "issue_time", "redeem_by", "revoke_reason"}

func codeValues(b *batchRow, r *codeRow, now time.Time) []any {
	return []any{r.CodeHMAC, r.KeyID, b.IncidentID, b.CohortID, r.SubjectID, r.SubjectID, b.ID,
		int64(r.Attempt), string(enrollment.CodeIssued), now, b.RedeemBy, ""}
}

// insertCodes writes code rows. It bypasses gorm's Create, which reflects over every row:
// this is the hot path of a 50M-code issuance.
func (s *Store) insertCodes(tx *gorm.DB, b *batchRow, rows []codeRow, now time.Time) error {
	err := s.bulkInsert(tx, "codes", codeColumns, codeInsertRows, len(rows), func(i int) []any {
		return codeValues(b, &rows[i], now)
	})
	if err != nil {
		return fmt.Errorf("failed to insert codes: %w", err)
	}
	return nil
}

// codeInsertRows is how many rows one INSERT statement carries: 12 columns × 200 rows stays
// well under both engines' bound-parameter limits while amortising statement overhead.
const codeInsertRows = 200

// bulkInsert writes n rows into table: COPY on PostgreSQL inside a bulkTx, multi-row INSERT
// statements of perStmt rows elsewhere. values(i) gives row i's values in cols order. Errors
// are translated, so a unique violation is gorm.ErrDuplicatedKey on both paths.
func (s *Store) bulkInsert(tx *gorm.DB, table string, cols []string, perStmt, n int, values func(i int) []any) error {
	ctx := tx.Statement.Context
	if conn, ok := ctx.Value(bulkTxKey{}).(*sql.Conn); ok {
		return s.translate(copyRows(ctx, conn, table, cols, n, values))
	}
	var q strings.Builder
	args := make([]any, 0, perStmt*len(cols))
	for start := 0; start < n; start += perStmt {
		end := min(start+perStmt, n)
		q.Reset()
		q.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
		args = args[:0]
		for i := start; i < end; i++ {
			if i > start {
				q.WriteByte(',')
			}
			q.WriteByte('(')
			for c := range cols {
				if c > 0 {
					q.WriteByte(',')
				}
				s.placeholder(&q, (i-start)*len(cols)+c+1)
			}
			q.WriteByte(')')
			args = append(args, values(i)...)
		}
		// Straight to database/sql: gorm's Exec would expand each []byte value into a list.
		if _, err := tx.Statement.ConnPool.ExecContext(ctx, q.String(), args...); err != nil {
			return s.translate(err)
		}
	}
	return nil
}

// copyRows sends n rows with COPY on the bulk transaction's own connection. The error is
// returned raw, so that translate recognises a unique violation.
func copyRows(ctx context.Context, conn *sql.Conn, table string, cols []string, n int, values func(i int) []any) error {
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("bulk insert needs the pgx driver")
		}
		i := 0
		copied, err := sc.Conn().CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			return values(i - 1), nil
		}))
		if err != nil {
			return err
		}
		if copied != int64(n) {
			return fmt.Errorf("copied %d rows into %s, want %d", copied, table, n)
		}
		return nil
	})
}
