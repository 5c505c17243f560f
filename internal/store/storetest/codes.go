package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
)

// codeFixture seeds ann in cohorts A and B (refs APP-1, POST-1), bob and cy in A, and
// issues cohort A.
func codeFixture(t *testing.T, open OpenFunc) (*Fixture, *enrollment.Batch, map[string][]byte) {
	t.Helper()
	f := NewFixture(t, open)
	f.Import(IncidentID, Row(2, "APP-1", CohortA, "ann"), Row(3, "APP-2", CohortA, "bob"),
		Row(4, "APP-3", CohortA, "cy"), Row(5, "POST-1", CohortB, "ann"))
	b := f.Issue("batch-a", CohortA)
	return f, b, f.Codes(b.ID)
}

// unknownCode is an HMAC no code has.
var unknownCode = bytes.Repeat([]byte{0xee}, 32)

var codeTests = map[string]func(t *testing.T, open OpenFunc){
	"lookup by any candidate HMAC returns the code in context": func(t *testing.T, open OpenFunc) {
		f, b, codes := codeFixture(t, open)
		v, err := f.S.LookupCode(t.Context(), [][]byte{unknownCode, codes["APP-1"]})
		must(t, err, "lookup by the second candidate")
		c := v.Code
		if !bytes.Equal(c.HMAC, codes["APP-1"]) || c.State != enrollment.CodeIssued || c.BatchID != b.ID ||
			c.IncidentID != IncidentID || c.CohortID != CohortA || c.KeyID != MintKeyID || c.ID == 0 || c.SubjectID == 0 {
			t.Fatalf("looked-up code = %+v", c)
		}
		wantTime(t, "RedeemBy", c.RedeemBy, b.RedeemBy)
		wantTime(t, "IssueTime", c.IssueTime, Base)
		if v.ExternalRef != "APP-1" || v.EnrollmentID != "" {
			t.Fatalf("ExternalRef %q, EnrollmentID %q; want APP-1 and none", v.ExternalRef, v.EnrollmentID)
		}
		if v.Incident.ID != IncidentID || v.Incident.CoverageMonths != 24 || v.Incident.PartnerID != PartnerID {
			t.Fatalf("incident = %+v", v.Incident)
		}
		if v.Partner.ID != PartnerID || v.Partner.EnrollmentURI == "" {
			t.Fatalf("partner = %+v", v.Partner)
		}
		if got := ids(v.Cohorts, func(c enrollment.Cohort) string { return c.ID }); got != "[cohort-a cohort-b]" {
			t.Fatalf("cohorts = %s, want every membership [cohort-a cohort-b]", got)
		}
		for _, c := range v.Cohorts {
			if len(c.RecommendedActions) == 0 || c.DisplayName == "" {
				t.Fatalf("cohort %s lacks its description: %+v", c.ID, c)
			}
		}
		v, err = f.S.LookupCode(t.Context(), [][]byte{codes["APP-2"]})
		must(t, err, "lookup bob")
		if v.ExternalRef != "APP-2" || len(v.Cohorts) != 1 || v.Cohorts[0].ID != CohortA {
			t.Fatalf("bob: ref %q cohorts %+v", v.ExternalRef, v.Cohorts)
		}
		_, err = f.S.LookupCode(t.Context(), [][]byte{unknownCode, bytes.Repeat([]byte{1}, 32)})
		wantKind(t, err, enrollment.ErrNotFound, "lookup unknown code")
	},
	"redeem creates a pending enrollment; a second redeem is already exists": func(t *testing.T, open OpenFunc) {
		f, _, codes := codeFixture(t, open)
		now := RedeemTime
		e, v, err := f.S.RedeemCode(t.Context(), [][]byte{unknownCode, codes["APP-1"]}, "enr-ann", now)
		must(t, err, "redeem")
		if e.ID != "enr-ann" || e.State != enrollment.EnrollmentPending || e.IncidentID != IncidentID ||
			e.CohortID != CohortA || e.PartnerID != PartnerID || e.SubjectID != v.Code.SubjectID || e.CodeID != v.Code.ID || e.MemberID != "" {
			t.Fatalf("enrollment = %+v", e)
		}
		wantTime(t, "RedeemTime", e.RedeemTime, now)
		wantTime(t, "ActivationDeadline", e.ActivationDeadline, now.AddDate(0, 0, enrollment.DefaultActivationWindowDays))
		if v.Code.State != enrollment.CodeRedeemed || v.EnrollmentID != e.ID || v.ExternalRef != "APP-1" || len(v.Cohorts) != 2 {
			t.Fatalf("redeem view = %+v", v)
		}
		stored := f.Enrollment(e.ID)
		wantTime(t, "stored ActivationDeadline", stored.ActivationDeadline, e.ActivationDeadline)
		if stored.State != enrollment.EnrollmentPending || stored.CodeID != e.CodeID {
			t.Fatalf("stored enrollment = %+v", stored)
		}
		v, err = f.S.LookupCode(t.Context(), [][]byte{codes["APP-1"]})
		must(t, err, "lookup redeemed")
		if v.Code.State != enrollment.CodeRedeemed || v.EnrollmentID != e.ID {
			t.Fatalf("lookup after redeem: state %s enrollment %q", v.Code.State, v.EnrollmentID)
		}
		wantTime(t, "code RedeemTime", v.Code.RedeemTime, now)

		_, _, err = f.S.RedeemCode(t.Context(), [][]byte{codes["APP-1"]}, "enr-again", now.Add(time.Hour))
		wantKind(t, err, enrollment.ErrAlreadyExists, "second redeem")
		_, err = f.S.GetEnrollment(t.Context(), "enr-again", "")
		wantKind(t, err, enrollment.ErrNotFound, "enrollment of the losing redeem")
		_, _, err = f.S.RedeemCode(t.Context(), [][]byte{unknownCode}, "enr-x", now)
		wantKind(t, err, enrollment.ErrNotFound, "redeem unknown code")
	},
	"redeem at the redeem-by instant is failed precondition": func(t *testing.T, open OpenFunc) {
		f, b, codes := codeFixture(t, open)
		_, _, err := f.S.RedeemCode(t.Context(), [][]byte{codes["APP-1"]}, "enr-late", b.RedeemBy)
		wantKind(t, err, enrollment.ErrFailedPrecondition, "redeem at redeem-by")
		_, _, err = f.S.RedeemCode(t.Context(), [][]byte{codes["APP-1"]}, "enr-later", b.RedeemBy.AddDate(1, 0, 0))
		wantKind(t, err, enrollment.ErrFailedPrecondition, "redeem after redeem-by")
		_, err = f.S.GetEnrollment(t.Context(), "enr-late", "")
		wantKind(t, err, enrollment.ErrNotFound, "enrollment of an expired redeem")
		// One second earlier the same code still works.
		f.Redeem(codes["APP-1"], "enr-ontime", b.RedeemBy.Add(-time.Second))
	},
	"revoke an issued code; redeeming it is failed precondition": func(t *testing.T, open OpenFunc) {
		f, _, codes := codeFixture(t, open)
		at := Base.AddDate(0, 0, 5)
		c, err := f.S.RevokeCode(t.Context(), IncidentID, "APP-2", "letter returned", at)
		must(t, err, "revoke")
		if c.State != enrollment.CodeRevoked || c.RevokeReason != "letter returned" || !bytes.Equal(c.HMAC, codes["APP-2"]) {
			t.Fatalf("revoked code = %+v", c)
		}
		wantTime(t, "RevokeTime", c.RevokeTime, at)
		v, err := f.S.LookupCode(t.Context(), [][]byte{codes["APP-2"]})
		must(t, err, "lookup revoked")
		if v.Code.State != enrollment.CodeRevoked || v.Code.RevokeReason != "letter returned" {
			t.Fatalf("lookup after revoke = %+v", v.Code)
		}
		_, _, err = f.S.RedeemCode(t.Context(), [][]byte{codes["APP-2"]}, "enr-bob", RedeemTime)
		wantKind(t, err, enrollment.ErrFailedPrecondition, "redeem revoked code")
		_, err = f.S.GetEnrollment(t.Context(), "enr-bob", "")
		wantKind(t, err, enrollment.ErrNotFound, "enrollment of a revoked redeem")
	},
	"revoke needs an issued code of a known subject": func(t *testing.T, open OpenFunc) {
		f, b, codes := codeFixture(t, open)
		f.Subjects(CohortB, "POST-9") // imported, never issued
		f.Redeem(codes["APP-1"], "enr-ann", RedeemTime)
		_, err := f.S.RevokeCode(t.Context(), IncidentID, "APP-1", "x", RedeemTime.Add(time.Hour))
		wantKind(t, err, enrollment.ErrFailedPrecondition, "revoke redeemed code")
		_, err = f.S.RevokeCode(t.Context(), IncidentID, "APP-3", "x", b.RedeemBy)
		wantKind(t, err, enrollment.ErrFailedPrecondition, "revoke expired code")
		_, err = f.S.RevokeCode(t.Context(), IncidentID, "NOBODY", "x", RedeemTime)
		wantKind(t, err, enrollment.ErrNotFound, "revoke unknown subject")
		_, err = f.S.RevokeCode(t.Context(), "incident-nope", "APP-2", "x", RedeemTime)
		wantKind(t, err, enrollment.ErrNotFound, "revoke in unknown incident")
		_, err = f.S.RevokeCode(t.Context(), IncidentID, "POST-9", "x", RedeemTime)
		wantKind(t, err, enrollment.ErrNotFound, "revoke subject without a code")
		v, err := f.S.LookupCode(t.Context(), [][]byte{codes["APP-1"]})
		must(t, err, "lookup")
		if v.Code.State != enrollment.CodeRedeemed {
			t.Fatalf("failed revoke changed the code to %s", v.Code.State)
		}
	},
	"fifty concurrent redeems of one code: one wins, the rest already exists": func(t *testing.T, open OpenFunc) {
		f, _, codes := codeFixture(t, open)
		const n = 50
		before := f.counters()
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				_, _, errs[i] = f.S.RedeemCode(t.Context(), [][]byte{codes["APP-1"]}, fmt.Sprintf("enr-race-%02d", i), RedeemTime)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("redeem %d and %d both won", winner, i)
			case err == nil:
				winner = i
			case !isKind(err, enrollment.ErrAlreadyExists):
				t.Errorf("redeem %d: %v (%T), want success or already exists", i, err, err)
			}
		}
		if winner < 0 {
			t.Fatal("no redeem won")
		}
		list, err := f.S.ListEnrollments(t.Context(), PartnerID, "", "", 100)
		must(t, err, "list enrollments")
		if len(list) != 1 || list[0].ID != fmt.Sprintf("enr-race-%02d", winner) {
			t.Fatalf("enrollments after the race = %s, want only the winner's", ids(list, enrollmentID))
		}
		v, err := f.S.LookupCode(t.Context(), [][]byte{codes["APP-1"]})
		must(t, err, "lookup")
		if v.EnrollmentID != list[0].ID || v.Code.State != enrollment.CodeRedeemed {
			t.Fatalf("code after the race: %s, enrollment %q", v.Code.State, v.EnrollmentID)
		}
		after := f.wantCountersEqualRecount("after the race")
		wantDelta(t, before, after, map[string]int64{
			"cohort-a/code/ISSUED": -1, "cohort-a/code/REDEEMED": 1, "cohort-a/enrollment/PENDING": 1,
		})
	},
	"redeems racing a revoke: each loser reports what the code became": func(t *testing.T, open OpenFunc) {
		f, _, codes := codeFixture(t, open)
		const n = 20
		start := make(chan struct{})
		errs := make([]error, n)
		var revokeErr error
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				_, _, errs[i] = f.S.RedeemCode(t.Context(), [][]byte{codes["APP-2"]}, fmt.Sprintf("enr-race-%02d", i), RedeemTime)
			})
		}
		wg.Go(func() {
			<-start
			_, revokeErr = f.S.RevokeCode(t.Context(), IncidentID, "APP-2", "superseded", RedeemTime)
		})
		close(start)
		wg.Wait()
		v, err := f.S.LookupCode(t.Context(), [][]byte{codes["APP-2"]})
		must(t, err, "lookup")
		// Whoever won, every loser's error must describe the code's final state.
		loser := enrollment.ErrAlreadyExists
		switch v.Code.State {
		case enrollment.CodeRevoked:
			must(t, revokeErr, "revoke that won")
			loser = enrollment.ErrFailedPrecondition
		case enrollment.CodeRedeemed:
			wantKind(t, revokeErr, enrollment.ErrFailedPrecondition, "revoke that lost to a redeem")
		default:
			t.Fatalf("code state after the race = %s", v.Code.State)
		}
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
			case !isKind(err, loser):
				t.Errorf("redeem %d against a %s code: %v, want %v", i, v.Code.State, err, loser)
			}
		}
		want := 0
		if v.Code.State == enrollment.CodeRedeemed {
			want = 1
		}
		if wins != want {
			t.Fatalf("%d redeems won against a %s code, want %d", wins, v.Code.State, want)
		}
		f.wantCountersEqualRecount("after the race")
	},
}

func enrollmentID(e *enrollment.Enrollment) string { return e.ID }
