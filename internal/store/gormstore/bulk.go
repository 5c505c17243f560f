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
		return s.tx(ctx, fn)
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

// insertCodes writes code rows: COPY on PostgreSQL (inside a bulkTx), multi-row INSERT
// statements elsewhere. Both bypass gorm's Create, which reflects over every row: this is the
// hot path of a 50M-code issuance.
func (s *Store) insertCodes(tx *gorm.DB, b *batchRow, rows []codeRow, now time.Time) error {
	if conn, ok := tx.Statement.Context.Value(bulkTxKey{}).(*sql.Conn); ok {
		if err := copyCodes(tx.Statement.Context, conn, b, rows, now); err != nil {
			return fmt.Errorf("failed to copy codes: %w", s.translate(err))
		}
		return nil
	}
	return s.insertCodesMultiRow(tx, b, rows, now)
}

func copyCodes(ctx context.Context, conn *sql.Conn, b *batchRow, rows []codeRow, now time.Time) error {
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("bulk insert needs the pgx driver")
		}
		i := 0
		n, err := sc.Conn().CopyFrom(ctx, pgx.Identifier{"codes"}, codeColumns, pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(rows) {
				return nil, nil
			}
			i++
			return codeValues(b, &rows[i-1], now), nil
		}))
		if err != nil {
			return err // raw, so that translate recognises a unique violation
		}
		if n != int64(len(rows)) {
			return fmt.Errorf("copied %d codes, want %d", n, len(rows))
		}
		return nil
	})
}

// codeInsertRows is how many rows one INSERT statement carries: 12 columns × 200 rows stays
// well under both engines' bound-parameter limits while amortising statement overhead.
const codeInsertRows = 200

func (s *Store) insertCodesMultiRow(tx *gorm.DB, b *batchRow, rows []codeRow, now time.Time) error {
	cols := len(codeColumns)
	var sql strings.Builder
	args := make([]any, 0, codeInsertRows*cols)
	for start := 0; start < len(rows); start += codeInsertRows {
		part := rows[start:min(start+codeInsertRows, len(rows))]
		sql.Reset()
		sql.WriteString("INSERT INTO codes (" + strings.Join(codeColumns, ", ") + ") VALUES ")
		args = args[:0]
		for i := range part {
			if i > 0 {
				sql.WriteByte(',')
			}
			sql.WriteByte('(')
			for c := range cols {
				if c > 0 {
					sql.WriteByte(',')
				}
				s.placeholder(&sql, i*cols+c+1)
			}
			sql.WriteByte(')')
			args = append(args, codeValues(b, &part[i], now)...)
		}
		// Straight to database/sql: gorm's Exec would expand each []byte HMAC into a list.
		if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, sql.String(), args...); err != nil {
			return fmt.Errorf("failed to insert codes: %w", s.translate(err))
		}
	}
	return nil
}
