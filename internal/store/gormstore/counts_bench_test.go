package gormstore_test

// Finance counts at scale: Store.Counters (what GetCounts reads: counter rows kept in the
// same transaction as every change) against the COUNT(*) baseline it replaces (a GROUP BY over
// every code of the incident), measured in the same run on the same SQLite database.
//
//	go test -run '^$' -bench 'Counters|CountStar' -benchtime 2s ./internal/store/gormstore/
//	ENROLL_BENCH_CODES=5000000 go test -run '^$' -bench 'Counters|CountStar' -timeout 30m ./internal/store/gormstore/
//
// The database is built once per size and kept in the temp dir
// ($TMPDIR/enroll-counts-bench-v1-N/enroll.db); delete the directory to rebuild it. Building
// is setup, not what is measured: codes go in with multi-row INSERTs straight through
// database/sql, then RepairCounters writes the counters from a recount and the benchmark
// checks once that Counters equals Recount exactly.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store/gormstore"
)

const (
	benchIncident = "bench-counts"
	benchPartner  = "bench-monitor"
	// benchLayout names the shape of the generated data; change it when the generator changes
	// so that old cached databases are not reused.
	benchLayout = "v1"
)

// benchCohorts split the codes roughly as the product's example incident does (40M credit
// applicants, 7.8M postpaid, 0.85M prepaid customers), in per-mille.
var benchCohorts = []struct {
	id       string
	perMille int
}{{"credit-applicants", 820}, {"postpaid-customers", 160}, {"prepaid-customers", 20}}

var benchT0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// benchCodes is ENROLL_BENCH_CODES, default 200000.
func benchCodes(b *testing.B) int {
	n := 200000
	if v := os.Getenv("ENROLL_BENCH_CODES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			b.Fatalf("ENROLL_BENCH_CODES=%q: want a number of codes, at least 1000", v)
		}
	}
	return n
}

// benchStore opens the cached database of benchCodes codes, building it first if needed.
func benchStore(b *testing.B) (*gormstore.Store, int) {
	b.Helper()
	n := benchCodes(b)
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("enroll-counts-bench-%s-%d", benchLayout, n))
	path := filepath.Join(dir, "enroll.db")
	marker := filepath.Join(dir, "complete")
	ctx := context.Background()
	if _, err := os.Stat(marker); err == nil {
		s, err := gormstore.Open(ctx, gormstore.Config{Driver: gormstore.DriverSQLite, DSN: path})
		if err == nil {
			if got := benchCodeTotal(b, s); got == int64(n) {
				b.Cleanup(func() { _ = s.Close() })
				return s, n
			}
			_ = s.Close()
		}
		b.Logf("cached database %s is unusable; rebuilding it", path)
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	s, err := gormstore.Open(ctx, gormstore.Config{Driver: gormstore.DriverSQLite, DSN: path})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	benchBuild(b, s, n)
	b.Logf("built %s with %d codes in %v", path, n, time.Since(began).Round(time.Millisecond))
	if err := os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	return s, n
}

// benchCodeTotal is how many codes the counters say the incident has.
func benchCodeTotal(b *testing.B, s *gormstore.Store) int64 {
	rows, err := s.Counters(context.Background(), benchIncident)
	if err != nil {
		return -1
	}
	var total int64
	for _, r := range rows {
		if r.Kind == enrollment.CountCodes && r.Day == "" {
			total += r.N
		}
	}
	return total
}

// benchState spreads the codes over the states a live incident has: most still outstanding,
// a fifth redeemed, some expired or revoked.
func benchState(i int) enrollment.CodeState {
	switch i % 50 {
	case 0, 1, 2:
		return enrollment.CodeExpired
	case 3, 4:
		return enrollment.CodeRevoked
	}
	if i%5 == 0 {
		return enrollment.CodeRedeemed
	}
	return enrollment.CodeIssued
}

func benchBuild(b *testing.B, s *gormstore.Store, n int) {
	ctx := context.Background()
	if err := s.CreatePartner(ctx, &enrollment.Partner{ID: benchPartner, DisplayName: "Bench monitor", EnrollmentURI: "https://monitor.example/enroll"}); err != nil {
		b.Fatal(err)
	}
	if err := s.CreateIncident(ctx, &enrollment.Incident{
		ID: benchIncident, Title: "Counts benchmark", CoverageMonths: 24, RedeemWindowDays: 180,
		ActivationWindowDays: 30, PartnerID: benchPartner, CreateTime: benchT0,
	}); err != nil {
		b.Fatal(err)
	}
	for _, c := range benchCohorts {
		if err := s.CreateCohort(ctx, &enrollment.Cohort{IncidentID: benchIncident, ID: c.id, DisplayName: c.id, OfferApplies: true}); err != nil {
			b.Fatal(err)
		}
	}
	sqlDB, err := s.DB().DB()
	if err != nil {
		b.Fatal(err)
	}
	// The code table's indexes (one unique on random HMACs) are dropped for the load and
	// built again from their own DDL afterwards: sorting once is far faster than millions of
	// random B-tree inserts.
	var indexes []string
	if err := s.DB().Raw("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'codes' AND sql IS NOT NULL").
		Scan(&indexes).Error; err != nil {
		b.Fatal(err)
	}
	for _, ddl := range indexes {
		name := strings.Fields(ddl[strings.Index(strings.ToUpper(ddl), "INDEX")+len("INDEX"):])[0]
		if err := s.DB().Exec("DROP INDEX " + name).Error; err != nil {
			b.Fatal(err)
		}
	}
	loadStart := time.Now()
	if err := benchInsertCodes(ctx, sqlDB, n); err != nil {
		b.Fatal(err)
	}
	indexStart := time.Now()
	for _, ddl := range indexes {
		if err := s.DB().Exec(ddl).Error; err != nil {
			b.Fatal(err)
		}
	}
	if err := s.DB().Exec("ANALYZE").Error; err != nil {
		b.Fatal(err)
	}
	countStart := time.Now()
	// The counters come from a recount, then must equal one: a cheap proof that what the
	// benchmark reads is the truth and not an empty table.
	if err := s.RepairCounters(ctx, benchIncident); err != nil {
		b.Fatal(err)
	}
	counters, err := s.Counters(ctx, benchIncident)
	if err != nil {
		b.Fatal(err)
	}
	recount, err := s.Recount(ctx, benchIncident)
	if err != nil {
		b.Fatal(err)
	}
	if !slices.Equal(counters, recount) {
		b.Fatalf("counters differ from the recount after building:\n%v\n%v", counters, recount)
	}
	if got := benchCodeTotal(b, s); got != int64(n) {
		b.Fatalf("counters hold %d codes, want %d", got, n)
	}
	b.Logf("setup: %d codes loaded in %v, %d indexes built in %v, counters repaired and checked against a recount in %v",
		n, indexStart.Sub(loadStart).Round(time.Millisecond), len(indexes), countStart.Sub(indexStart).Round(time.Millisecond),
		time.Since(countStart).Round(time.Millisecond))
}

// benchInsertCodes writes n code rows in transactions of 100000 rows, 500 rows a statement.
func benchInsertCodes(ctx context.Context, db *sql.DB, n int) error {
	cols := []string{"code_hmac", "key_id", "incident_id", "cohort_id", "subject_id", "live_subject_id", "batch_id",
		"attempt", "state", "issue_time", "redeem_by", "redeem_time", "revoke_time", "revoke_reason"}
	const perStmt, perTx = 500, 100000
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
	stmtSQL := func(rows int) string {
		return "INSERT INTO codes (" + strings.Join(cols, ", ") + ") VALUES " + strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
	}
	// Cohort boundaries by code number.
	bounds := make([]int, len(benchCohorts))
	acc := 0
	for i, c := range benchCohorts {
		acc += c.perMille
		bounds[i] = n * acc / 1000
	}
	bounds[len(bounds)-1] = n
	args := make([]any, 0, perStmt*len(cols))
	for start := 0; start < n; start += perTx {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		full, err := tx.PrepareContext(ctx, stmtSQL(perStmt))
		if err != nil {
			_ = tx.Rollback()
			return err
		}
		for i := start; i < min(start+perTx, n); i += perStmt {
			rows := min(perStmt, n-i, start+perTx-i)
			args = args[:0]
			for j := i; j < i+rows; j++ {
				cohort := 0
				for j >= bounds[cohort] {
					cohort++
				}
				id := benchCohorts[cohort].id
				var seed [8]byte
				binary.BigEndian.PutUint64(seed[:], uint64(j))
				hmac := sha256.Sum256(seed[:])
				subject := int64(j + 1)
				issue := benchT0.Add(time.Duration(j%14) * 24 * time.Hour)
				st := benchState(j)
				var live, redeemTime, revokeTime any
				reason := ""
				switch st {
				case enrollment.CodeIssued:
					live = subject
				case enrollment.CodeRedeemed:
					live = subject
					redeemTime = issue.Add(time.Duration(j%60) * 24 * time.Hour)
				case enrollment.CodeRevoked:
					revokeTime, reason = issue.Add(time.Duration(j%20)*24*time.Hour), "reported stolen"
				}
				redeemBy := issue.AddDate(0, 0, 180)
				if st == enrollment.CodeExpired {
					issue = issue.AddDate(0, 0, -200)
					redeemBy = issue.AddDate(0, 0, 180)
				}
				args = append(args, hmac[:], "lk1", benchIncident, id, subject, live, "bench-"+id,
					0, string(st), issue, redeemBy, redeemTime, revokeTime, reason)
			}
			if rows == perStmt {
				_, err = full.ExecContext(ctx, args...)
			} else {
				_, err = tx.ExecContext(ctx, stmtSQL(rows), args...)
			}
			if err != nil {
				_ = tx.Rollback()
				return fmt.Errorf("insert codes %d..%d: %w", i, i+rows, err)
			}
		}
		_ = full.Close()
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkCounters reads the incident's counters as GetCounts does.
func BenchmarkCounters(b *testing.B) {
	s, n := benchStore(b)
	ctx := context.Background()
	var rows []enrollment.CounterRow
	for b.Loop() {
		var err error
		if rows, err = s.Counters(ctx, benchIncident); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rows)), "rows")
	b.ReportMetric(float64(n), "codes")
}

// BenchmarkCountStar is the baseline: the same numbers by state gauge, counted from the code
// rows.
func BenchmarkCountStar(b *testing.B) {
	s, n := benchStore(b)
	ctx := context.Background()
	type agg struct {
		CohortID string
		State    string
		N        int64
	}
	var rows []agg
	var total int64
	for b.Loop() {
		rows = rows[:0]
		if err := s.DB().WithContext(ctx).Raw("SELECT cohort_id, state, COUNT(*) AS n FROM codes WHERE incident_id = ? GROUP BY cohort_id, state",
			benchIncident).Scan(&rows).Error; err != nil {
			b.Fatal(err)
		}
		total = 0
		for _, r := range rows {
			total += r.N
		}
	}
	if total != int64(n) {
		b.Fatalf("COUNT(*) saw %d codes, want %d", total, n)
	}
	b.ReportMetric(float64(len(rows)), "rows")
	b.ReportMetric(float64(n), "codes")
}
