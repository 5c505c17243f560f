package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
)

// Second tenant: partner-b serves incident-b.
const (
	PartnerB  = "partner-b"
	IncidentB = "incident-b"
)

// ActivateTime is a leap day: 24 months later has no Feb 29, so coverage ends Feb 28.
var ActivateTime = time.Date(2024, 2, 29, 10, 0, 0, 0, time.UTC)

// enrollmentFixture redeems a code for each of n people of cohort A at RedeemTime into
// enrollments enr-A-01, enr-A-02, ...; and, for partner-b, two people of incident-b into
// enr-B-01 and enr-B-02. All are PENDING.
func enrollmentFixture(t *testing.T, open OpenFunc, n int) *Fixture {
	t.Helper()
	f := NewFixture(t, open)
	f.Subjects(CohortA, refs("A", n)...)
	for ref, code := range f.Codes(f.Issue("batch-a", CohortA).ID) {
		f.Redeem(code, "enr-"+ref, RedeemTime)
	}
	f.AddPartner(PartnerB)
	f.AddIncident(IncidentB, PartnerB)
	f.AddCohort(IncidentB, CohortB, true)
	f.Import(IncidentB, Row(2, "B-01", CohortB, "bea"), Row(3, "B-02", CohortB, "ben"))
	for ref, code := range f.Codes(f.IssueIn(IncidentB, "batch-b", CohortB).ID) {
		f.Redeem(code, "enr-"+ref, RedeemTime)
	}
	return f
}

// wantUnchanged fails t unless enrollment id still reads as before.
func (f *Fixture) wantUnchanged(id string, before *enrollment.Enrollment, what string) {
	f.T.Helper()
	if after := f.Enrollment(id); !reflect.DeepEqual(after, before) {
		f.T.Fatalf("%s changed the enrollment:\nbefore %+v\nafter  %+v", what, before, after)
	}
}

// listAll pages through a partner's enrollments with limit and returns their ids.
func (f *Fixture) listAll(partnerID string, state enrollment.EnrollmentState, limit int) []string {
	f.T.Helper()
	var out []string
	after := ""
	for range 100 {
		page, err := f.S.ListEnrollments(f.T.Context(), partnerID, after, state, limit)
		must(f.T, err, "list enrollments")
		if len(page) > limit {
			f.T.Fatalf("page of %d enrollments, limit %d", len(page), limit)
		}
		if len(page) == 0 {
			return out
		}
		for _, e := range page {
			if e.PartnerID != partnerID || (state != "" && e.State != state) {
				f.T.Fatalf("listing %s/%s returned %+v", partnerID, state, e)
			}
			out = append(out, e.ID)
		}
		after = page[len(page)-1].ID
	}
	f.T.Fatal("listing never ends")
	return nil
}

var enrollmentTests = map[string]func(t *testing.T, open OpenFunc){
	"activate binds the member id and ends coverage on a clamped month": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 1)
		e := f.Activate("enr-A-01", "M-100", ActivateTime)
		want := time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)
		if e.State != enrollment.EnrollmentActive || e.MemberID != "M-100" {
			t.Fatalf("activated = %+v", e)
		}
		wantTime(t, "CoverageEnd", e.CoverageEnd, want)
		wantTime(t, "CoverageEnd (domain rule)", e.CoverageEnd, enrollment.AddMonthsClamped(ActivateTime, 24))
		wantTime(t, "ActivateTime", e.ActivateTime, ActivateTime)
		stored := f.Enrollment(e.ID)
		if !reflect.DeepEqual(stored, e) {
			t.Fatalf("stored %+v\nreturned %+v", stored, e)
		}
	},
	"activate by another partner is not found and changes nothing": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 1)
		before := f.Enrollment("enr-A-01")
		_, err := f.S.ActivateEnrollment(t.Context(), "enr-A-01", PartnerB, "M-1", ActivateTime)
		wantKind(t, err, enrollment.ErrNotFound, "activate another partner's enrollment")
		f.wantUnchanged("enr-A-01", before, "activation by another partner")
		_, err = f.S.ActivateEnrollment(t.Context(), "enr-nope", PartnerID, "M-1", ActivateTime)
		wantKind(t, err, enrollment.ErrNotFound, "activate unknown enrollment")
	},
	"activate at the deadline is failed precondition": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 1)
		before := f.Enrollment("enr-A-01")
		for _, at := range []time.Time{before.ActivationDeadline, before.ActivationDeadline.AddDate(0, 1, 0)} {
			_, err := f.S.ActivateEnrollment(t.Context(), "enr-A-01", PartnerID, "M-1", at)
			wantKind(t, err, enrollment.ErrFailedPrecondition, "activate at "+at.Format(time.RFC3339))
		}
		f.wantUnchanged("enr-A-01", before, "late activation")
		f.Activate("enr-A-01", "M-1", before.ActivationDeadline.Add(-time.Second))
	},
	"activate twice is failed precondition": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 2)
		first := f.Activate("enr-A-01", "M-1", ActivateTime)
		_, err := f.S.ActivateEnrollment(t.Context(), "enr-A-01", PartnerID, "M-2", ActivateTime.Add(time.Hour))
		wantKind(t, err, enrollment.ErrFailedPrecondition, "second activation")
		f.wantUnchanged("enr-A-01", first, "second activation")
		_, err = f.S.CancelEnrollment(t.Context(), "enr-A-02", PartnerID, "user asked", ActivateTime)
		must(t, err, "cancel")
		_, err = f.S.ActivateEnrollment(t.Context(), "enr-A-02", PartnerID, "M-2", ActivateTime)
		wantKind(t, err, enrollment.ErrFailedPrecondition, "activate cancelled enrollment")
	},
	"a member id bound to another enrollment of the partner is already exists": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 2)
		f.Activate("enr-A-01", "M-1", ActivateTime)
		before := f.Enrollment("enr-A-02")
		_, err := f.S.ActivateEnrollment(t.Context(), "enr-A-02", PartnerID, "M-1", ActivateTime)
		wantKind(t, err, enrollment.ErrAlreadyExists, "activate with a bound member id")
		f.wantUnchanged("enr-A-02", before, "activation with a bound member id")
		// The failure left nothing behind: the same enrollment activates with its own id, and
		// another partner may use the same member id.
		f.Activate("enr-A-02", "M-2", ActivateTime)
		_, err = f.S.ActivateEnrollment(t.Context(), "enr-B-01", PartnerB, "M-1", ActivateTime)
		must(t, err, "another partner reuses member id M-1")
	},
	"concurrent activations: one member id binds once, one enrollment activates once": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 9)
		run := func(n int, do func(i int) error) []error {
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { <-start; errs[i] = do(i) })
			}
			close(start)
			wg.Wait()
			return errs
		}
		wantOneWinner := func(what string, errs []error, loser error) int {
			t.Helper()
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Fatalf("%s: %d and %d both won", what, winner, i)
				case err == nil:
					winner = i
				case !isKind(err, loser):
					t.Fatalf("%s: attempt %d: %v, want %v", what, i, err, loser)
				}
			}
			if winner < 0 {
				t.Fatalf("%s: nobody won", what)
			}
			return winner
		}
		// Eight enrollments race for member id M-SAME.
		errs := run(8, func(i int) error {
			_, err := f.S.ActivateEnrollment(t.Context(), fmt.Sprintf("enr-A-%02d", i+1), PartnerID, "M-SAME", ActivateTime)
			return err
		})
		wantOneWinner("same member id", errs, enrollment.ErrAlreadyExists)
		// Eight activations of the last enrollment with distinct member ids.
		errs = run(8, func(i int) error {
			_, err := f.S.ActivateEnrollment(t.Context(), "enr-A-09", PartnerID, fmt.Sprintf("M-%d", i), ActivateTime)
			return err
		})
		w := wantOneWinner("same enrollment", errs, enrollment.ErrFailedPrecondition)
		if e := f.Enrollment("enr-A-09"); e.MemberID != fmt.Sprintf("M-%d", w) {
			t.Fatalf("enr-A-09 bound to %q, the winner was M-%d", e.MemberID, w)
		}
		if active := f.listAll(PartnerID, enrollment.EnrollmentActive, 100); len(active) != 2 {
			t.Fatalf("active enrollments = %v, want 2", active)
		}
		f.wantCountersEqualRecount("after concurrent activations")
	},
	"get is scoped to the partner": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 1)
		e, err := f.S.GetEnrollment(t.Context(), "enr-A-01", PartnerID)
		must(t, err, "get own enrollment")
		if e.ID != "enr-A-01" || e.PartnerID != PartnerID {
			t.Fatalf("got %+v", e)
		}
		if all := f.Enrollment("enr-A-01"); !reflect.DeepEqual(all, e) {
			t.Fatalf("unscoped read %+v differs from scoped %+v", all, e)
		}
		_, err = f.S.GetEnrollment(t.Context(), "enr-A-01", PartnerB)
		wantKind(t, err, enrollment.ErrNotFound, "get another partner's enrollment")
		_, err = f.S.GetEnrollment(t.Context(), "enr-nope", "")
		wantKind(t, err, enrollment.ErrNotFound, "get unknown enrollment")
	},
	"list pages by id within the partner and filters by state": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 5)
		f.Activate("enr-A-02", "M-2", ActivateTime)
		f.Activate("enr-A-04", "M-4", ActivateTime)
		_, err := f.S.CancelEnrollment(t.Context(), "enr-A-03", PartnerID, "duplicate", ActivateTime)
		must(t, err, "cancel")
		tests := []struct {
			name    string
			partner string
			state   enrollment.EnrollmentState
			want    []string
		}{
			{"all of partner a", PartnerID, "", refsWith("enr-A", 1, 2, 3, 4, 5)},
			{"active", PartnerID, enrollment.EnrollmentActive, refsWith("enr-A", 2, 4)},
			{"pending", PartnerID, enrollment.EnrollmentPending, refsWith("enr-A", 1, 5)},
			{"cancelled", PartnerID, enrollment.EnrollmentCancelled, refsWith("enr-A", 3)},
			{"lapsed is not stored yet", PartnerID, enrollment.EnrollmentLapsed, nil},
			{"partner b sees only its own", PartnerB, "", refsWith("enr-B", 1, 2)},
			{"unknown partner sees nothing", "partner-nope", "", nil},
		}
		for _, tc := range tests {
			for _, limit := range []int{1, 2, 100} {
				if got := f.listAll(tc.partner, tc.state, limit); !slices.Equal(got, tc.want) {
					t.Errorf("%s (limit %d) = %v, want %v", tc.name, limit, got, tc.want)
				}
			}
		}
		page, err := f.S.ListEnrollments(t.Context(), PartnerID, "enr-A-02", "", 2)
		must(t, err, "list after enr-A-02")
		if got := ids(page, enrollmentID); got != "[enr-A-03 enr-A-04]" {
			t.Fatalf("after enr-A-02, limit 2 = %s", got)
		}
	},
	"cancel from pending and from active; twice is failed precondition": func(t *testing.T, open OpenFunc) {
		f := enrollmentFixture(t, open, 3)
		f.Activate("enr-A-02", "M-2", ActivateTime)
		at := ActivateTime.Add(24 * time.Hour) // before the pending one lapses
		for _, id := range []string{"enr-A-01", "enr-A-02"} {
			before := f.Enrollment(id)
			_, err := f.S.CancelEnrollment(t.Context(), id, PartnerB, "not yours", at)
			wantKind(t, err, enrollment.ErrNotFound, "cancel by another partner")
			f.wantUnchanged(id, before, "cancel by another partner")

			e, err := f.S.CancelEnrollment(t.Context(), id, PartnerID, "member asked", at)
			must(t, err, "cancel "+string(before.State)+" enrollment")
			if e.State != enrollment.EnrollmentCancelled || e.CancelReason != "member asked" {
				t.Fatalf("cancelled %s = %+v", before.State, e)
			}
			wantTime(t, "CancelTime", e.CancelTime, at)
			if stored := f.Enrollment(id); !reflect.DeepEqual(stored, e) {
				t.Fatalf("stored %+v\nreturned %+v", stored, e)
			}
			_, err = f.S.CancelEnrollment(t.Context(), id, PartnerID, "again", at.Add(time.Hour))
			wantKind(t, err, enrollment.ErrFailedPrecondition, "cancel twice")
			f.wantUnchanged(id, e, "second cancel")
		}
		// A PENDING enrollment past its deadline reads LAPSED and cannot be cancelled.
		lapsed := f.Enrollment("enr-A-03")
		_, err := f.S.CancelEnrollment(t.Context(), "enr-A-03", PartnerID, "late", lapsed.ActivationDeadline)
		wantKind(t, err, enrollment.ErrFailedPrecondition, "cancel lapsed enrollment")
		f.wantUnchanged("enr-A-03", lapsed, "cancel of a lapsed enrollment")
		_, err = f.S.CancelEnrollment(t.Context(), "enr-nope", PartnerID, "x", at)
		wantKind(t, err, enrollment.ErrNotFound, "cancel unknown enrollment")
	},
}

// refsWith returns prefix-NN for each n.
func refsWith(prefix string, ns ...int) []string {
	all := refs(prefix, slices.Max(ns))
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = all[n-1]
	}
	return out
}
