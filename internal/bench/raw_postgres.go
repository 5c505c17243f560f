package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"

	"github.com/idprotect/enroll/internal/enrollment"
)

// pgWriter copies each chunk in one transaction: COPY into subjects, subject_cohorts, codes.
type pgWriter struct {
	conn *pgx.Conn
	meta rawCodeMeta
	row  []any
}

func (w *pgWriter) write(ctx context.Context, c *rawChunk) (err error) {
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	m := w.meta
	copyN := func(table string, cols []string, n int, row func(i int) []any) error {
		if n == 0 {
			return nil
		}
		got, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			return row(i), nil
		}))
		if err != nil {
			return fmt.Errorf("COPY %s: %w", table, err)
		}
		if got != int64(n) {
			return fmt.Errorf("COPY %s wrote %d rows, want %d", table, got, n)
		}
		return nil
	}
	// pgx encodes each row as soon as it is returned, so one []any serves every row.
	if err := copyN("subjects", subjectCols, len(c.subjects), func(i int) []any {
		s := &c.subjects[i]
		w.row = append(w.row[:0], s.id, m.incident, s.ref, s.identityKey, s.cohort)
		return w.row
	}); err != nil {
		return err
	}
	if err := copyN("subject_cohorts", memberCols, len(c.members), func(i int) []any {
		r := &c.members[i]
		w.row = append(w.row[:0], m.incident, r.cohort, r.subjectID)
		return w.row
	}); err != nil {
		return err
	}
	if err := copyN("codes", codeCols, len(c.codes), func(i int) []any {
		r := &c.codes[i]
		w.row = append(w.row[:0], r.hmac, m.keyID, m.incident, r.cohort, r.subjectID, r.subjectID, batchIDFor(r.cohort),
			int64(0), string(enrollment.CodeIssued), m.issueTime, m.redeemBy, "")
		return w.row
	}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// WithSearchPath returns dsn (a postgres:// URL) with search_path set to schema, so that a
// server or driver given it works in that schema alone.
func WithSearchPath(dsn, schema string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("the PostgreSQL DSN must be a URL such as postgres://user:pass@host:5432/db?sslmode=disable")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// pgSchemas creates and drops the benchmark's private schemas.
type pgSchemas struct {
	dsn     string
	created []string
}

// create makes a fresh schema named prefix_<random> and returns a DSN that uses it.
func (p *pgSchemas) create(ctx context.Context, prefix string) (schema, dsn string, err error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema = prefix + "_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		return "", "", fmt.Errorf("failed to connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", "", fmt.Errorf("failed to create schema %s: %w", schema, err)
	}
	p.created = append(p.created, schema)
	dsn, err = WithSearchPath(p.dsn, schema)
	return schema, dsn, err
}

// dropAll removes the schemas made by create.
func (p *pgSchemas) dropAll(ctx context.Context) error {
	if len(p.created) == 0 {
		return nil
	}
	conn, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, s := range p.created {
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+s+" CASCADE"); err != nil {
			return fmt.Errorf("failed to drop schema %s: %w", s, err)
		}
	}
	p.created = nil
	return nil
}

// pgSchemaSize is the on-disk size of a schema's tables and indexes.
func pgSchemaSize(ctx context.Context, dsn, schema string) (int64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`, schema).Scan(&n)
	return n, err
}

func pgVersion(ctx context.Context, dsn string) (string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var v string
	err = conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return "PostgreSQL " + v, err
}
