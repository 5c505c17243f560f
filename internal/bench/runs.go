package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store/gormstore"
)

// dbTarget is a fresh database: a SQLite file or a PostgreSQL schema.
type dbTarget struct {
	driver string
	dsn    string // what the server or gormstore is given
	path   string // SQLite file
	schema string // PostgreSQL schema
}

func (e *env) newTarget(ctx context.Context, name string) (dbTarget, error) {
	if e.o.engine == "sqlite" {
		p := filepath.Join(e.work, name+".db")
		return dbTarget{driver: gormstore.DriverSQLite, dsn: p, path: p}, nil
	}
	schema, dsn, err := e.schemas.create(ctx, "bench_"+name)
	if err != nil {
		return dbTarget{}, err
	}
	return dbTarget{driver: gormstore.DriverPostgres, dsn: dsn, schema: schema}, nil
}

func (t dbTarget) size(ctx context.Context) int64 {
	if t.path != "" {
		var n int64
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if st, err := os.Stat(t.path + suffix); err == nil {
				n += st.Size()
			}
		}
		return n
	}
	n, _ := pgSchemaSize(ctx, t.dsn, t.schema)
	return n
}

// systemOnce starts a fresh server on a fresh database, imports and issues rows rows, and
// stops it.
func (e *env) systemOnce(ctx context.Context, in *input, rows int64) (*SystemResult, int64, error) {
	name := "system"
	if e.o.series != nil {
		name = fmt.Sprintf("system_%d", rows)
	}
	t, err := e.newTarget(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	fmt.Fprintf(e.stderr, "system run (%s, %s rows): starting enrolld...\n", e.o.engine, groupThousands(rows))
	srv, err := StartServer(ctx, ServerConfig{Binary: e.binary, Driver: t.driver, DSN: t.dsn, Secrets: e.secrets,
		LogPath: filepath.Join(e.work, name+"-enrolld.log"), ExtraEnv: e.o.serverEnv})
	if err != nil {
		return nil, 0, err
	}
	defer srv.Kill() // no-op after Stop
	sampler := StartSampler(srv.PID(), e.o.sampleEvery, e.rssCSV, fmt.Sprintf("%s,%d", e.o.engine, rows))
	res, err := (&systemRun{srv: srv, sampler: sampler, file: in.path, rows: rows, progress: e.prog}).run(ctx)
	sampler.Stop()
	if err != nil {
		return nil, 0, err
	}
	if err := srv.Stop(30 * time.Second); err != nil {
		fmt.Fprintf(e.stderr, "warning: %v\n", err)
	}
	size := t.size(ctx)
	if !e.o.keep && t.path != "" {
		// Free the disk before the raw run: a 10M-row run needs the space twice otherwise.
		for _, suffix := range []string{"", "-wal", "-shm"} {
			_ = os.Remove(t.path + suffix)
		}
	}
	return res, size, nil
}

// rawOnce writes the same rows through the raw driver into a fresh database.
func (e *env) rawOnce(ctx context.Context, in *input) (*RawResult, int64, error) {
	t, err := e.newTarget(ctx, "raw")
	if err != nil {
		return nil, 0, err
	}
	fmt.Fprintf(e.stderr, "raw run (%s, %s rows)...\n", e.o.engine, groupThousands(in.rows))
	// gormstore.Open creates exactly the system's tables and indexes, and on SQLite gives a
	// pool with exactly its pragmas (WAL, synchronous=NORMAL, cache size, busy timeout).
	st, err := gormstore.Open(ctx, gormstore.Config{Driver: t.driver, DSN: t.dsn})
	if err != nil {
		return nil, 0, fmt.Errorf("failed to create the raw database: %w", err)
	}
	defer st.Close()
	if err := createRawIncident(ctx, st); err != nil {
		return nil, 0, err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	meta := rawCodeMeta{incident: IncidentID, issueTime: now, redeemBy: now.AddDate(0, 0, 90)}
	var (
		w      rawWriter
		method string
	)
	switch t.driver {
	case gormstore.DriverSQLite:
		db, err := st.BulkDB().DB()
		if err != nil {
			return nil, 0, err
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, 0, err
		}
		defer conn.Close()
		w = newSQLiteWriter(conn, e.o.rawStmtRows, meta)
		method = fmt.Sprintf("database/sql + mattn/go-sqlite3, gormstore's bulk connection and pragmas, prepared %d-row INSERTs, %s rows per transaction", e.o.rawStmtRows, groupThousands(int64(e.o.rawChunk)))
	default:
		conn, err := pgx.Connect(ctx, t.dsn)
		if err != nil {
			return nil, 0, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		w = &pgWriter{conn: conn, meta: meta}
		method = fmt.Sprintf("pgx CopyFrom (COPY ... FROM STDIN binary) into the three tables, %s rows per transaction", groupThousands(int64(e.o.rawChunk)))
	}
	res, err := rawRun(ctx, in.path, in.rows, e.o.rawChunk, e.secrets, meta, w, e.prog)
	if err != nil {
		return nil, 0, fmt.Errorf("raw run: %w", err)
	}
	res.Method = method
	return res, t.size(ctx), nil
}

func createRawIncident(ctx context.Context, st *gormstore.Store) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	if err := st.CreatePartner(ctx, &enrollment.Partner{ID: "bench-partner", DisplayName: "Benchmark partner", EnrollmentURI: "https://partner.example/enroll"}); err != nil {
		return err
	}
	in := &enrollment.Incident{ID: IncidentID, Title: "Issuance benchmark (raw)", PartnerID: "bench-partner", CreateTime: now}
	in.ApplyDefaults()
	if err := st.CreateIncident(ctx, in); err != nil {
		return err
	}
	for _, c := range benchCohorts {
		if err := st.CreateCohort(ctx, &enrollment.Cohort{IncidentID: IncidentID, ID: c.id, DisplayName: c.id, ExposedData: []string{"NAME"}, OfferApplies: c.offer}); err != nil {
			return err
		}
	}
	return nil
}
