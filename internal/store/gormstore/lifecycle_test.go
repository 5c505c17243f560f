package gormstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/store"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
	"github.com/idprotect/enroll/internal/store/storetest"
)

// The shared suite sees events only through partner feeds. These tests read the rows the
// interface does not expose: the summarised code events and the lost-code requests.

func fixture(t *testing.T, engine gormtest.Engine) (*storetest.Fixture, *gormstore.Store) {
	t.Helper()
	s := engine.Open(t)
	return storetest.NewFixture(t, func(testing.TB) store.Store { return s }), s
}

type eventRow struct {
	Type, Resource, IncidentID, PartnerID string
	PartnerSeq                            *int64
	Count                                 int64
	Time                                  time.Time
}

func codeEvents(t *testing.T, s *gormstore.Store) []eventRow {
	t.Helper()
	var rows []eventRow
	if err := s.DB().Table("events").Where("type = ?", "codes.expired").Order("seq").Find(&rows).Error; err != nil {
		t.Fatalf("read events: %v", err)
	}
	return rows
}

// TestSweepCodesSummarisesEvents: a code sweep writes one codes.expired event per incident
// with the count, not one per code, and a sweep that expires nothing writes none.
func TestSweepCodesSummarisesEvents(t *testing.T) {
	t.Parallel()
	for _, engine := range gormtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Parallel()
			f, s := fixture(t, engine)
			f.Subjects(storetest.CohortA, "A-1", "A-2", "A-3", "A-4")
			b := f.Issue("batch-a", storetest.CohortA)
			f.AddPartner(storetest.PartnerB)
			f.AddIncident(storetest.IncidentB, storetest.PartnerB)
			f.AddCohort(storetest.IncidentB, storetest.CohortA, true)
			f.Import(storetest.IncidentB, storetest.Row(2, "X-1", storetest.CohortA, "xena"), storetest.Row(3, "X-2", storetest.CohortA, "xavier"))
			f.IssueIn(storetest.IncidentB, "batch-x", storetest.CohortA)
			f.Redeem(f.Codes(b.ID)["A-1"], "enr-1", storetest.RedeemTime)

			n, err := s.SweepCodes(t.Context(), b.RedeemBy.Add(-time.Second), 100)
			if err != nil || n != 0 {
				t.Fatalf("early sweep = %d, %v", n, err)
			}
			if got := codeEvents(t, s); len(got) != 0 {
				t.Fatalf("a sweep that expired nothing wrote %+v", got)
			}
			n, err = s.SweepCodes(t.Context(), b.RedeemBy, 100)
			if err != nil || n != 5 {
				t.Fatalf("sweep = %d, %v; want 5", n, err)
			}
			got := codeEvents(t, s)
			want := map[string]int64{storetest.IncidentID: 3, storetest.IncidentB: 2}
			if len(got) != len(want) {
				t.Fatalf("codes.expired events = %+v, want one per incident", got)
			}
			for _, e := range got {
				if e.Count != want[e.IncidentID] || e.Resource != "incidents/"+e.IncidentID || e.PartnerID != "" || e.PartnerSeq != nil ||
					!e.Time.Equal(b.RedeemBy) {
					t.Fatalf("event %+v, want incidents/%s with count %d at %s and no partner", e, e.IncidentID, want[e.IncidentID], b.RedeemBy)
				}
			}
			n, err = s.SweepCodes(t.Context(), b.RedeemBy.Add(time.Hour), 100)
			if err != nil || n != 0 {
				t.Fatalf("repeated sweep = %d, %v", n, err)
			}
			if again := codeEvents(t, s); len(again) != len(got) {
				t.Fatalf("a repeated sweep wrote events: %+v", again[len(got):])
			}
		})
	}
}

// TestResendRequestsRecordMatches: every request writes one row; it names the subject only
// when the identity matches a person whose code is still ISSUED.
func TestResendRequestsRecordMatches(t *testing.T) {
	t.Parallel()
	for _, engine := range gormtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Parallel()
			f, s := fixture(t, engine)
			f.Subjects(storetest.CohortA, "ann", "bob")
			codes := f.Codes(f.Issue("batch-a", storetest.CohortA).ID)
			f.Redeem(codes["bob"], "enr-bob", storetest.RedeemTime)
			var ann int64
			if err := s.DB().Table("subjects").Where("external_ref = ?", "ann").Pluck("id", &ann).Error; err != nil {
				t.Fatal(err)
			}
			for i, person := range []string{"ann", "nobody", "bob"} {
				if err := s.RecordResendRequest(t.Context(), storetest.IdentityKey(person), storetest.RedeemTime.Add(time.Duration(i)*time.Second)); err != nil {
					t.Fatalf("resend request for %s: %v", person, err)
				}
			}
			var rows []struct {
				SubjectID   *int64
				RequestTime time.Time
			}
			if err := s.DB().Table("resend_requests").Order("id").Find(&rows).Error; err != nil {
				t.Fatal(err)
			}
			if len(rows) != 3 {
				t.Fatalf("%d resend rows, want one per request (3)", len(rows))
			}
			if rows[0].SubjectID == nil || *rows[0].SubjectID != ann {
				t.Fatalf("ann's request recorded subject %v, want %d", rows[0].SubjectID, ann)
			}
			for i, who := range []string{"", "nobody", "bob (redeemed)"} {
				if i > 0 && rows[i].SubjectID != nil {
					t.Fatalf("request for %s recorded subject %d, want none", who, *rows[i].SubjectID)
				}
				if want := storetest.RedeemTime.Add(time.Duration(i) * time.Second); !rows[i].RequestTime.Equal(want) {
					t.Fatalf("request %d time = %s, want %s", i, rows[i].RequestTime, want)
				}
			}
		})
	}
}

// TestClaimLeaseHeldElsewhereDoesNotWait: a replica asking for a lease another one holds gets
// its "no" at once, even while a write transaction is open (the holder sweeping): on SQLite
// the claim must not queue for the write lock, on PostgreSQL not for the lease row.
func TestClaimLeaseHeldElsewhereDoesNotWait(t *testing.T) {
	t.Parallel()
	for _, engine := range gormtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Parallel()
			s := engine.Open(t)
			now := storetest.Base
			if ok, err := s.ClaimLease(t.Context(), "sweeper", "replica-a", now, now.Add(2*time.Minute)); err != nil || !ok {
				t.Fatalf("first claim = %v, %v", ok, err)
			}
			tx := s.DB().Begin()
			if tx.Error != nil {
				t.Fatal(tx.Error)
			}
			t.Cleanup(func() { tx.Rollback() })
			if err := tx.Exec("UPDATE leases SET until = until WHERE name = ?", "sweeper").Error; err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			began := time.Now()
			ok, err := s.ClaimLease(ctx, "sweeper", "replica-b", now.Add(time.Minute), now.Add(3*time.Minute))
			if err != nil || ok {
				t.Fatalf("claim of a held lease during a write transaction = %v, %v after %s; want false at once", ok, err, time.Since(began))
			}
			if d := time.Since(began); d > time.Second {
				t.Fatalf("claim of a held lease waited %s for the open transaction", d)
			}
		})
	}
}
