package gormstore_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
	"github.com/idprotect/enroll/internal/store/storetest"
)

// TestStore runs the shared store suite on every engine the machine offers.
func TestStore(t *testing.T) {
	t.Parallel()
	for _, engine := range gormtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			storetest.Run(t, func(t testing.TB) store.Store { return engine.Open(t) })
		})
	}
}

// migrationCount is how many migrations a store has recorded.
func migrationCount(t *testing.T, s *gormstore.Store) int64 {
	t.Helper()
	var n int64
	if err := s.DB().Table("schema_migrations").Count(&n).Error; err != nil {
		t.Fatalf("count schema_migrations: %v", err)
	}
	return n
}

// TestMigrateIdempotentSQLite opens one SQLite file repeatedly, sequentially and while
// another handle is open: migrations apply once and data survives.
func TestMigrateIdempotentSQLite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := gormtest.SQLite(t)
	first, err := gormstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("first open: %v", err)
	}
	applied := migrationCount(t, first)
	if applied == 0 {
		t.Fatal("no migration recorded")
	}
	if err := first.CreatePartner(ctx, &enrollment.Partner{ID: "partner-a", DisplayName: "A"}); err != nil {
		t.Fatal(err)
	}
	// A second handle while the first is open, as a restarted process next to a dying one.
	second, err := gormstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open while another handle is open: %v", err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := gormstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = third.Close() })
	if n := migrationCount(t, third); n != applied {
		t.Fatalf("schema_migrations has %d rows after reopening, want %d", n, applied)
	}
	if _, err := third.GetPartner(ctx, "partner-a"); err != nil {
		t.Fatalf("data lost across reopen: %v", err)
	}
}

// TestConcurrentOpenPostgres starts several replicas on one empty schema at once: the
// advisory lock must serialise the migrations so that every one of them opens.
func TestConcurrentOpenPostgres(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		cfg := gormtest.Postgres(t) // skips without ENROLL_TEST_POSTGRES_DSN
		const replicas = 4
		var wg sync.WaitGroup
		start := make(chan struct{})
		stores := make([]*gormstore.Store, replicas)
		errs := make([]error, replicas)
		for i := range replicas {
			wg.Go(func() {
				<-start
				stores[i], errs[i] = gormstore.Open(context.Background(), cfg)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: replica %d failed to open: %v", round, i, err)
				continue
			}
			t.Cleanup(func() { _ = stores[i].Close() })
		}
		if t.Failed() {
			t.FailNow()
		}
		if n := migrationCount(t, stores[0]); n == 0 {
			t.Fatalf("round %d: no migration recorded", round)
		}
		var applied []string
		if err := stores[0].DB().Table("schema_migrations").Pluck("name", &applied).Error; err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, name := range applied {
			if seen[name] {
				t.Fatalf("round %d: migration %s recorded twice", round, name)
			}
			seen[name] = true
		}
	}
}

// TestMigrationLockPerSchema holds one schema's migration lock from outside: an Open on that
// schema waits for it, and an Open on another schema of the same database does not.
func TestMigrationLockPerSchema(t *testing.T) {
	t.Parallel()
	held, other := gormtest.Postgres(t), gormtest.Postgres(t) // skip without ENROLL_TEST_POSTGRES_DSN
	raw, err := gorm.Open(postgres.Open(held.DSN), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := raw.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	lock := raw.Begin()
	if err := lock.Exec(gormstore.MigrationLockSQL).Error; err != nil {
		t.Fatalf("take the migration lock: %v", err)
	}
	released := false
	defer func() {
		if !released {
			lock.Rollback()
		}
	}()

	open := func(cfg gormstore.Config) chan error {
		done := make(chan error, 1)
		go func() {
			s, err := gormstore.Open(context.Background(), cfg)
			if err == nil {
				t.Cleanup(func() { _ = s.Close() })
			}
			done <- err
		}()
		return done
	}
	select {
	case err := <-open(other):
		if err != nil {
			t.Fatalf("open another schema while the lock is held: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an Open on another schema waited for this schema's migration lock: the lock key ignores the schema")
	}
	waiting := open(held)
	select {
	case err := <-waiting:
		t.Fatalf("an Open on the locked schema finished (%v) while another session held its migration lock", err)
	case <-time.After(time.Second):
	}
	if err := lock.Commit().Error; err != nil {
		t.Fatal(err)
	}
	released = true
	select {
	case err := <-waiting:
		if err != nil {
			t.Fatalf("open after the lock was released: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the Open on the locked schema still waits after the lock was released")
	}
}

// TestPoolSettings checks the pool limits reach database/sql.
func TestPoolSettings(t *testing.T) {
	t.Parallel()
	for _, e := range gormtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			cfg := e.Config(t)
			cfg.MaxOpenConns, cfg.MaxIdleConns, cfg.ConnMaxLifetime = 3, 1, time.Hour
			s, err := gormstore.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			sqlDB, _ := s.DB().DB()
			// Hold three connections at once, then give them back: one stays pooled.
			ctx := context.Background()
			var conns []*sql.Conn
			for range 3 {
				c, err := sqlDB.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			if st := sqlDB.Stats(); st.MaxOpenConnections != 3 || st.InUse != 3 {
				t.Fatalf("pool stats with three held: %+v; want max 3, 3 in use", st)
			}
			for _, c := range conns {
				_ = c.Close()
			}
			if st := sqlDB.Stats(); st.Idle != 1 || st.OpenConnections != 1 {
				t.Fatalf("pool stats after release: %+v; want 1 idle, 1 open (MaxIdleConns 1)", st)
			}
		})
	}
}
