package gormstore

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/audit"
)

// migration is one named, ordered schema step. Names are never reused or reordered; a new
// change is a new entry at the end.
type migration struct {
	name string
	up   func(tx *gorm.DB) error
}

var migrations = []migration{
	{name: "0001_initial", up: func(tx *gorm.DB) error {
		return tx.Migrator().CreateTable(
			&incidentRow{}, &cohortRow{}, &partnerRow{}, &clientRow{}, &subjectRow{},
			&membershipRow{}, &batchRow{}, &codeRow{}, &enrollmentRow{}, &eventRow{}, &counterRow{},
		)
	}},
	// Lifecycle: batch leases, partner change-feed sequences, sweeper leases and indexes,
	// idempotency keys, lost-code requests. AutoMigrate only adds what is missing.
	{name: "0002_lifecycle", up: func(tx *gorm.DB) error {
		return tx.AutoMigrate(
			&batchRow{}, &codeRow{}, &enrollmentRow{}, &eventRow{},
			&partnerSeqRow{}, &leaseRow{}, &idempotencyRow{}, &resendRow{},
		)
	}},
	{name: "0003_audit", up: func(tx *gorm.DB) error {
		if err := tx.AutoMigrate(&auditRow{}, &auditHeadRow{}); err != nil {
			return err
		}
		return tx.Create(&auditHeadRow{ID: 1, Seq: 0, Hash: audit.GenesisHash}).Error
	}},
	// Cohort memberships by subject: the code look-up read a whole subject_cohorts scan per
	// redemption. A database created after this change already has the index from 0001.
	{name: "0004_memberships_subject", up: func(tx *gorm.DB) error {
		if tx.Migrator().HasIndex(&membershipRow{}, "memberships_subject") {
			return nil
		}
		return tx.Migrator().CreateIndex(&membershipRow{}, "memberships_subject")
	}},
	// The flag SweepExpiring keeps (0002 shipped the sweep without its column, so every sweep
	// failed at the expiring step). A database created after this change has it from 0001.
	{name: "0005_enrollments_expiring_notified", up: func(tx *gorm.DB) error {
		if tx.Migrator().HasColumn(&enrollmentRow{}, "ExpiringNotified") {
			return nil
		}
		return tx.Migrator().AddColumn(&enrollmentRow{}, "ExpiringNotified")
	}},
	{name: "0006_daily_counters", up: func(tx *gorm.DB) error {
		return tx.AutoMigrate(&dailyCounterRow{})
	}},
	// Invoice reconciliation stages a vendor's invoice here (reconcile.go), so that any size
	// compares in flat memory.
	{name: "0007_reconcile_invoices", up: func(tx *gorm.DB) error {
		return tx.Migrator().CreateTable(&reconcileRunRow{}, &invoiceLineRow{})
	}},
}

func (s *Store) migrate(ctx context.Context) error {
	db := s.db.WithContext(ctx)
	// schema_migrations itself is created under the lock too: replicas creating it at once on
	// an empty PostgreSQL schema would otherwise race in the catalog (pg_type unique violation).
	err := db.Transaction(func(tx *gorm.DB) error {
		if err := s.lockMigrations(tx); err != nil {
			return err
		}
		return tx.AutoMigrate(&migrationRow{})
	})
	if err != nil {
		return fmt.Errorf("failed to create schema_migrations: %w", err)
	}
	for _, m := range migrations {
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := s.lockMigrations(tx); err != nil {
				return err
			}
			var n int64
			if err := tx.Model(&migrationRow{}).Where("name = ?", m.name).Count(&n).Error; err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if err := m.up(tx); err != nil {
				return err
			}
			return tx.Create(&migrationRow{Name: m.name, AppliedAt: time.Now().UTC()}).Error
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

// MigrationLockSQL takes the migration lock of the connection's schema until the transaction
// ends. Advisory locks are database-wide, so the key includes current_schema(): deployments
// (or test runs) in separate schemas of one database migrate independently, while replicas of
// one deployment queue. coalesce keeps the lock taken if the search_path names no existing
// schema (the strict lock function would otherwise return NULL without locking).
const MigrationLockSQL = "SELECT pg_advisory_xact_lock(4242001, hashtext(coalesce(current_schema(), '')))"

// lockMigrations serialises replicas migrating one PostgreSQL schema until tx ends; the loser
// then sees the winner's rows. SQLite needs nothing: its transactions take the write lock up
// front.
func (s *Store) lockMigrations(tx *gorm.DB) error {
	if s.driver != DriverPostgres {
		return nil
	}
	return tx.Exec(MigrationLockSQL).Error
}
