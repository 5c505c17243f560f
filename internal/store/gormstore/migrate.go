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

// lockMigrations serialises replicas migrating one PostgreSQL database until tx ends; the
// loser then sees the winner's rows. SQLite needs nothing: its transactions take the write
// lock up front.
func (s *Store) lockMigrations(tx *gorm.DB) error {
	if s.driver != DriverPostgres {
		return nil
	}
	return tx.Exec("SELECT pg_advisory_xact_lock(4242001)").Error
}
