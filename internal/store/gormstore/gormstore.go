// Package gormstore implements store.Store with gorm over SQLite (the embedded default) and
// PostgreSQL (production, many replicas). One implementation serves both; the few places
// where the engines differ are the dialect hooks in this file.
package gormstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/idprotect/enroll/internal/audit"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
)

// Drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Config says which database to open.
type Config struct {
	// Driver is DriverSQLite or DriverPostgres.
	Driver string
	// DSN is a file path for SQLite, a connection URL for PostgreSQL.
	DSN string
	// MaxOpenConns bounds the pool; 0 picks a default per engine.
	MaxOpenConns int
	// MaxIdleConns is how many connections stay pooled when idle; 0 keeps up to
	// MaxOpenConns.
	MaxIdleConns int
	// ConnMaxLifetime closes connections older than this; 0 never does.
	ConnMaxLifetime time.Duration
}

// Store is the gorm implementation of store.Store.
type Store struct {
	db *gorm.DB
	// bulk runs bulk transactions (import, issuance): on SQLite a single connection of its
	// own, on PostgreSQL the pool.
	bulk   *gorm.DB
	driver string
	// stopTrim ends the SQLite memory trimmer.
	stopTrim chan struct{}
}

var _ store.Store = (*Store)(nil)

// Open connects, tunes the engine and applies pending migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	gcfg := &gorm.Config{
		// Translate driver errors so unique violations surface as gorm.ErrDuplicatedKey on
		// both engines.
		TranslateError: true,
		Logger:         logger.Discard,
		NowFunc:        func() time.Time { return time.Now().UTC() },
	}
	var (
		db  *gorm.DB
		err error
	)
	switch cfg.Driver {
	case DriverSQLite:
		db, err = gorm.Open(sqlite.Open(sqliteDSN(cfg.DSN, sqlitePoolCacheKiB)), gcfg)
	case DriverPostgres:
		db, err = gorm.Open(postgres.Open(cfg.DSN), gcfg)
	default:
		return nil, fmt.Errorf("unknown database driver %q: use sqlite or postgres", cfg.Driver)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open %s database: %w", cfg.Driver, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("failed to get database handle: %w", err)
	}
	maxOpen := cfg.MaxOpenConns
	if maxOpen == 0 {
		maxOpen = 20
		if cfg.Driver == DriverSQLite {
			// One writer at a time is all SQLite allows; a few connections serve readers
			// while a write transaction holds the lock.
			maxOpen = 8
		}
	}
	sqlDB.SetMaxOpenConns(maxOpen)
	maxIdle := cfg.MaxIdleConns
	if maxIdle == 0 || maxIdle > maxOpen {
		maxIdle = maxOpen
	}
	sqlDB.SetMaxIdleConns(maxIdle)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	sqlDB.SetConnMaxLifetime(cfg.ConnMaxLifetime)

	s := &Store{db: db, bulk: db, driver: cfg.Driver}
	if err := s.migrate(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("failed to migrate database: %w", err)
	}
	if cfg.Driver == DriverSQLite {
		// SQLite's page cache is per connection, and the pool hands every connection a turn
		// at the bulk work, so a large cache on all of them grows to connections × cache as
		// the database grows (332.6 MiB peak RSS at 5M rows, measured). Bulk writes get one
		// connection of their own with a large cache (the random-key indexes they insert into
		// are what it holds); the pool's many short transactions get small ones.
		s.bulk, err = gorm.Open(sqlite.Open(sqliteDSN(cfg.DSN, sqliteBulkCacheKiB)), gcfg)
		if err != nil {
			_ = sqlDB.Close()
			return nil, fmt.Errorf("failed to open the SQLite bulk connection: %w", err)
		}
		bulkDB, err := s.bulk.DB()
		if err != nil {
			_ = sqlDB.Close()
			return nil, err
		}
		bulkDB.SetMaxOpenConns(1)
		bulkDB.SetMaxIdleConns(1)
		s.stopTrim = make(chan struct{})
		go trimEvery(sqliteTrimInterval, s.stopTrim)
	}
	return s, nil
}

// sqliteTrimInterval is how often freed C memory is handed back (a few milliseconds of work).
const sqliteTrimInterval = 5 * time.Second

func trimEvery(d time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			releaseFreedMemory()
		}
	}
}

// SQLite page cache per connection, in KiB: the pool's (up to 8 by default) and the one bulk
// connection's, so at most 8 × 8 + 32 = 96 MiB in all.
const (
	sqlitePoolCacheKiB = 8 << 10
	sqliteBulkCacheKiB = 32 << 10
)

// sqliteDSN adds the settings a concurrent server needs: WAL so readers do not block the
// writer, a busy timeout so writers queue instead of failing, and BEGIN IMMEDIATE so a
// transaction takes the write lock up front (a deferred transaction that upgrades from read
// to write can fail with SQLITE_BUSY without waiting, which would turn a redemption race into
// an error instead of a queue).
func sqliteDSN(path string, cacheKiB int) string {
	if strings.HasPrefix(path, "file:") && strings.Contains(path, "?") {
		return path
	}
	params := "_journal_mode=WAL&_busy_timeout=30000&_txlock=immediate&_synchronous=NORMAL&_foreign_keys=on&_cache_size=-" + strconv.Itoa(cacheKiB)
	if strings.HasPrefix(path, "file:") {
		return path + "?" + params
	}
	return "file:" + path + "?" + params
}

// Close releases the pool.
func (s *Store) Close() error {
	if s.stopTrim != nil {
		close(s.stopTrim)
		s.stopTrim = nil
	}
	if s.bulk != s.db {
		if bulkDB, err := s.bulk.DB(); err == nil {
			_ = bulkDB.Close()
		}
	}
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// DB exposes the gorm handle to tests in this module that need to inspect raw rows.
func (s *Store) DB() *gorm.DB { return s.db }

// BulkDB is the handle bulk writes use (on SQLite its own connection, with a larger page
// cache), for baselines that must write the way the store does.
func (s *Store) BulkDB() *gorm.DB { return s.bulk }

// tx runs fn in a transaction. If the call carries an audit intent that no transaction has
// recorded yet, this one records it too, so the change and its audit entry commit or roll
// back together.
func (s *Store) tx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return busy(s.db.WithContext(ctx).Transaction(withAudit(ctx, fn)))
}

// busy turns SQLite's "database is locked" (a writer waited out the busy timeout) into a
// retryable error: under overload the caller should back off and retry, not see Internal.
func busy(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked) {
		return enrollment.Unavailablef("the database is busy; retry in a moment")
	}
	return err
}

func withAudit(ctx context.Context, fn func(tx *gorm.DB) error) func(tx *gorm.DB) error {
	in := audit.IntentFrom(ctx)
	if in == nil {
		return fn
	}
	return func(tx *gorm.DB) error {
		if err := fn(tx); err != nil {
			return err
		}
		if !in.Claim() {
			return nil
		}
		if err := appendAudit(tx, in, "OK"); err != nil {
			in.Unclaim()
			return err
		}
		// If the commit itself fails the entry is gone with the change; the interceptor then
		// records the failed call on its own.
		return nil
	}
}

// lockIssuance serialises IssueNext per incident on PostgreSQL by locking the batch's
// incident row until tx ends. Without it, two batches whose cohorts share a person (or two
// batches of one cohort) both see that person without a code under READ COMMITTED, and the
// second insert fails on the one-live-code index instead of skipping the person. Statements
// after the lock see the winner's codes and cursor. SQLite needs nothing: BEGIN IMMEDIATE
// already serialises writers.
func (s *Store) lockIssuance(tx *gorm.DB, batchID string) error {
	if s.driver != DriverPostgres {
		return nil
	}
	return tx.Exec("SELECT 1 FROM incidents WHERE id = (SELECT incident_id FROM batches WHERE id = ?) FOR UPDATE", batchID).Error
}

// placeholder writes the n-th (1-based) bind parameter in the engine's syntax, for the few
// statements that bypass gorm.
func (s *Store) placeholder(b *strings.Builder, n int) {
	if s.driver == DriverPostgres {
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
		return
	}
	b.WriteByte('?')
}

// translate maps a raw driver error the way gorm's TranslateError does, so that statements
// that bypass gorm still report unique violations as gorm.ErrDuplicatedKey.
func (s *Store) translate(err error) error {
	if t, ok := s.db.Dialector.(gorm.ErrorTranslator); ok {
		return t.Translate(err)
	}
	return err
}

func isDuplicate(err error) bool { return errors.Is(err, gorm.ErrDuplicatedKey) }

func isNotFound(err error) bool { return errors.Is(err, gorm.ErrRecordNotFound) }
