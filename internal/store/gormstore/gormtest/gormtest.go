// Package gormtest opens a fresh, migrated database per test on every engine the machine
// offers: a SQLite file in the test's temp dir always, and a private PostgreSQL schema when
// ENROLL_TEST_POSTGRES_DSN is set. Tests built on it run the same assertions on both.
package gormtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/idprotect/enroll/internal/store/gormstore"
)

// PostgresEnv names the variable holding the PostgreSQL DSN for tests.
const PostgresEnv = "ENROLL_TEST_POSTGRES_DSN"

// Engine is one database engine under test.
type Engine struct {
	// Name is "sqlite" or "postgres", used as the subtest name.
	Name string
	// Config returns the configuration of a fresh, empty database owned by t.
	Config func(t testing.TB) gormstore.Config
}

// Open opens and migrates a fresh database on e, closed when t ends.
func (e Engine) Open(t testing.TB) *gormstore.Store {
	t.Helper()
	s, err := gormstore.Open(context.Background(), e.Config(t))
	if err != nil {
		t.Fatalf("open %s store: %v", e.Name, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Engines lists SQLite and, when configured, PostgreSQL. Without the DSN it logs why
// PostgreSQL is skipped, so a green run on a laptop is not mistaken for full coverage.
func Engines(t testing.TB) []Engine {
	t.Helper()
	engines := []Engine{{Name: "sqlite", Config: SQLite}}
	if os.Getenv(PostgresEnv) != "" {
		engines = append(engines, Engine{Name: "postgres", Config: Postgres})
	} else {
		t.Logf("PostgreSQL tests skipped: set %s=postgres://user:pass@host/db to run them", PostgresEnv)
	}
	return engines
}

// SQLite returns the config of a new database file in t's temp dir.
func SQLite(t testing.TB) gormstore.Config {
	t.Helper()
	return gormstore.Config{Driver: gormstore.DriverSQLite, DSN: filepath.Join(t.TempDir(), "enroll.db")}
}

// Postgres creates a private schema for t, dropped when t ends, and returns a config whose
// search_path points at it. It skips t if the DSN is unset.
func Postgres(t testing.TB) gormstore.Config {
	t.Helper()
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		t.Skipf("PostgreSQL test skipped: set %s to run it", PostgresEnv)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	admin, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		if db, err := admin.DB(); err == nil {
			_ = db.Close()
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s must be a URL (postgres://...): %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return gormstore.Config{Driver: gormstore.DriverPostgres, DSN: u.String(), MaxOpenConns: 10}
}
