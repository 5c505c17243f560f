package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
)

// reissueBatch is the one-code batch a reissue at now brings along, as the service builds it.
func (f *Fixture) reissueBatch(id string, now time.Time) *enrollment.Batch {
	return &enrollment.Batch{
		ID: id, RedeemBy: f.Incident.RedeemBy(now), Creator: "storetest", CreateTime: now, UpdateTime: now,
		WrappedSecret: []byte("wrapped secret of " + id), MasterKeyID: "master-1", LookupKeyID: MintKeyID,
	}
}

// lookup reads a code by its HMAC.
func (f *Fixture) lookup(code []byte) *enrollment.CodeView {
	f.T.Helper()
	v, err := f.S.LookupCode(f.T.Context(), [][]byte{code})
	must(f.T, err, "lookup code")
	return v
}

// wantReissued fails t unless batch b holds exactly one code, the new ISSUED code of ref,
// re-derivable from its recorded attempt and distinct from old; it returns the new HMAC.
func (f *Fixture) wantReissued(b *enrollment.Batch, ref string, old []byte, now time.Time) []byte {
	f.T.Helper()
	got, err := f.S.GetBatch(f.T.Context(), b.ID)
	must(f.T, err, "get the reissue batch")
	if got.State != enrollment.BatchSucceeded || got.Total != 1 || got.Issued != 1 || got.IncidentID != IncidentID ||
		got.LeaseOwner != "" {
		f.T.Fatalf("reissue batch = %+v, want SUCCEEDED with 1 of 1 issued, no lease", got)
	}
	wantTime(f.T, "reissue batch RedeemBy", got.RedeemBy, b.RedeemBy)
	codes := f.BatchCodes(b.ID)
	if len(codes) != 1 || codes[0].ExternalRef != ref {
		f.T.Fatalf("reissue batch codes = %+v, want exactly one, of %s", codes, ref)
	}
	c := codes[0]
	if h, kid := Mint(c.SubjectID, c.Attempt); !bytes.Equal(c.HMAC, h) || c.KeyID != kid {
		f.T.Fatalf("new code of %s is not Mint(subject, recorded attempt %d)", ref, c.Attempt)
	}
	if bytes.Equal(c.HMAC, old) {
		f.T.Fatalf("the new code of %s is the old one", ref)
	}
	v := f.lookup(c.HMAC)
	if v.Code.State != enrollment.CodeIssued || v.Code.BatchID != b.ID || v.ExternalRef != ref || v.Code.SubjectID != f.lookup(old).Code.SubjectID {
		f.T.Fatalf("new code of %s = %+v", ref, v.Code)
	}
	wantTime(f.T, "new code IssueTime", v.Code.IssueTime, now)
	wantTime(f.T, "new code RedeemBy", v.Code.RedeemBy, b.RedeemBy)
	return c.HMAC
}

var reissueTests = map[string]func(t *testing.T, open OpenFunc){
	"reissue revokes the issued code as superseded and issues one in its own batch": func(t *testing.T, open OpenFunc) {
		f, _, codes := codeFixture(t, open)
		events := len(f.feed(PartnerID, 100))
		before := f.counters()
		now := Base.AddDate(0, 0, 10)
		b := f.reissueBatch("batch-re-1", now)
		out, err := f.S.ReissueCode(t.Context(), IncidentID, "APP-2", "letter returned", b, now, Mint)
		must(t, err, "reissue")
		if out.ID != b.ID || out.State != enrollment.BatchSucceeded || out.Total != 1 || out.CohortID != CohortA {
			t.Fatalf("ReissueCode returned %+v", out)
		}
		wantDelta(t, before, f.wantCountersEqualRecount("after the reissue"), map[string]int64{"cohort-a/code/REVOKED": 1})
		old := f.lookup(codes["APP-2"]).Code
		if old.State != enrollment.CodeRevoked || old.RevokeReason != "superseded: letter returned" {
			t.Fatalf("old code = %s %q, want REVOKED %q", old.State, old.RevokeReason, "superseded: letter returned")
		}
		wantTime(t, "old code RevokeTime", old.RevokeTime, now)
		fresh := f.wantReissued(b, "APP-2", codes["APP-2"], now)
		if got := f.feedTail(PartnerID, events); len(got) != 1 || got[0] != "code.reissued incidents/incident-a/subjects/APP-2" {
			t.Fatalf("partner feed after the reissue = %q, want one code.reissued", got)
		}
		_, _, err = f.S.RedeemCode(t.Context(), [][]byte{codes["APP-2"]}, "enr-old", now.Add(time.Hour))
		wantKind(t, err, enrollment.ErrFailedPrecondition, "redeem the superseded code")
		f.Redeem(fresh, "enr-new", now.Add(time.Hour))
		// The new code is redeemed now: it is not replaced again.
		_, err = f.S.ReissueCode(t.Context(), IncidentID, "APP-2", "again", f.reissueBatch("batch-re-x", now.Add(2*time.Hour)), now.Add(2*time.Hour), Mint)
		wantKind(t, err, enrollment.ErrFailedPrecondition, "reissue the redeemed new code")
		b2 := f.reissueBatch("batch-re-2", now.Add(2*time.Hour))
		before = f.counters()
		_, err = f.S.ReissueCode(t.Context(), IncidentID, "APP-3", "moved", b2, now.Add(2*time.Hour), Mint)
		must(t, err, "reissue APP-3")
		wantDelta(t, before, f.wantCountersEqualRecount("after the second reissue"), map[string]int64{"cohort-a/code/REVOKED": 1})
		f.wantReissued(b2, "APP-3", codes["APP-3"], now.Add(2*time.Hour))
	},
	"reissue of a redeemed code is failed precondition, of an unknown subject not found": func(t *testing.T, open OpenFunc) {
		f, _, codes := codeFixture(t, open)
		f.Redeem(codes["APP-1"], "enr-ann", RedeemTime)
		events := len(f.feed(PartnerID, 100))
		before := f.counters()
		for _, tc := range []struct {
			name, incident, ref string
			kind                error
		}{
			{"redeemed code", IncidentID, "APP-1", enrollment.ErrFailedPrecondition},
			{"unknown subject", IncidentID, "NOBODY", enrollment.ErrNotFound},
			{"unknown incident", "incident-nope", "APP-2", enrollment.ErrNotFound},
		} {
			b := f.reissueBatch("batch-re-"+tc.ref, RedeemTime.Add(time.Hour))
			_, err := f.S.ReissueCode(t.Context(), tc.incident, tc.ref, "lost", b, RedeemTime.Add(time.Hour), Mint)
			wantKind(t, err, tc.kind, "reissue of "+tc.name)
			_, err = f.S.GetBatch(t.Context(), b.ID)
			wantKind(t, err, enrollment.ErrNotFound, "batch of a failed reissue ("+tc.name+")")
		}
		wantDelta(t, before, f.wantCountersEqualRecount("after failed reissues"), nil)
		if got := f.feedTail(PartnerID, events); len(got) != 0 {
			t.Fatalf("failed reissues wrote events %q", got)
		}
		if v := f.lookup(codes["APP-1"]); v.Code.State != enrollment.CodeRedeemed || v.EnrollmentID != "enr-ann" {
			t.Fatalf("redeemed code after a refused reissue = %+v", v.Code)
		}
	},
	"reissue past redeem-by records the old code expired and replaces it": func(t *testing.T, open OpenFunc) {
		f, batch, codes := codeFixture(t, open)
		at := batch.RedeemBy // the redeem-by instant itself: expired, not yet swept
		before := f.counters()
		b := f.reissueBatch("batch-re-late", at)
		_, err := f.S.ReissueCode(t.Context(), IncidentID, "APP-3", "never arrived", b, at, Mint)
		must(t, err, "reissue an expired code")
		wantDelta(t, before, f.wantCountersEqualRecount("after reissuing an expired code"), map[string]int64{"cohort-a/code/EXPIRED": 1})
		if old := f.lookup(codes["APP-3"]).Code; old.State != enrollment.CodeExpired {
			t.Fatalf("old code stored as %s, want EXPIRED", old.State)
		}
		fresh := f.wantReissued(b, "APP-3", codes["APP-3"], at)
		// The sweep then expires the other two old codes, and not the new one.
		n, err := f.S.SweepCodes(t.Context(), at, 100)
		must(t, err, "sweep")
		if n != 2 {
			t.Fatalf("sweep expired %d codes, want the 2 other old ones", n)
		}
		if v := f.lookup(fresh); v.Code.State != enrollment.CodeIssued {
			t.Fatalf("new code after the sweep = %s", v.Code.State)
		}
		f.wantCountersEqualRecount("after the sweep")
	},
	"reissue after a revoke issues a new code": func(t *testing.T, open OpenFunc) {
		f, _, codes := codeFixture(t, open)
		_, err := f.S.RevokeCode(t.Context(), IncidentID, "APP-2", "returned", RedeemTime)
		must(t, err, "revoke")
		before := f.counters()
		b := f.reissueBatch("batch-re", RedeemTime.Add(time.Hour))
		_, err = f.S.ReissueCode(t.Context(), IncidentID, "APP-2", "new address", b, RedeemTime.Add(time.Hour), Mint)
		must(t, err, "reissue a revoked code")
		wantDelta(t, before, f.wantCountersEqualRecount("after the reissue"), map[string]int64{"cohort-a/code/ISSUED": 1})
		f.wantReissued(b, "APP-2", codes["APP-2"], RedeemTime.Add(time.Hour))
		if old := f.lookup(codes["APP-2"]).Code; old.State != enrollment.CodeRevoked || old.RevokeReason != "returned" {
			t.Fatalf("revoked code changed: %+v", old)
		}
	},
	"resend requests succeed whether or not the person matches": func(t *testing.T, open OpenFunc) {
		f, _, codes := codeFixture(t, open)
		f.Redeem(codes["APP-2"], "enr-bob", RedeemTime)
		before := f.counters()
		for _, person := range []string{"ann", "bob", "nobody"} {
			must(t, f.S.RecordResendRequest(t.Context(), IdentityKey(person), RedeemTime), "resend request for "+person)
		}
		wantDelta(t, before, f.wantCountersEqualRecount("after resend requests"), nil)
	},
}
