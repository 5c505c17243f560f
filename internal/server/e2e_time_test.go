package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// Deadlines are applied when read, before any sweep: the activation window lapses a pending
// enrollment at its deadline, and the redeem-by instant expires a code at that instant.
func TestE2EDeadlines(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		s := seed(t, h, "time-breach", "time-monitor")
		bg := context.Background()
		status := func(ref string) *enrollv1.GetEnrollmentStatusResponse {
			t.Helper()
			st, err := h.redeem.GetEnrollmentStatus(bg, &enrollv1.GetEnrollmentStatusRequest{Code: s.codes[ref]})
			wantCode(t, "GetEnrollmentStatus "+ref, err, codes.OK)
			return st
		}

		// Activation window: 30 days after redemption.
		en := s.redeemRef(t, h, "APP-0001")
		if !en.GetActivationDeadlineTime().AsTime().Equal(activationDeadline) {
			t.Fatalf("activation deadline %v, want %v", en.GetActivationDeadlineTime().AsTime(), activationDeadline)
		}
		h.clock.Set(activationDeadline.Add(-time.Second))
		if st := status("APP-0001"); st.GetEnrollment().GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_PENDING {
			t.Fatalf("one second before the activation deadline: %v, want PENDING", st.GetEnrollment().GetState())
		}
		h.clock.Set(activationDeadline)
		st := status("APP-0001")
		if st.GetCodeState() != enrollv1.CodeState_CODE_STATE_REDEEMED || st.GetEnrollment().GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_LAPSED ||
			!st.GetEnrollment().GetReadTime().AsTime().Equal(activationDeadline) {
			t.Fatalf("at the activation deadline: %v; want code REDEEMED, enrollment LAPSED", st)
		}
		pctx := s.partnerCtx(t, h)
		got, err := h.partner.GetEnrollment(pctx, &enrollv1.GetEnrollmentRequest{Name: en.GetName()})
		if err != nil || got.GetEnrollment().GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_LAPSED {
			t.Fatalf("partner reads %v, %v; want LAPSED", got, err)
		}
		_, err = h.partner.ActivateEnrollment(pctx, &enrollv1.ActivateEnrollmentRequest{Name: en.GetName(), MemberId: "late-1"})
		wantCode(t, "activate a lapsed enrollment", err, codes.FailedPrecondition, "lapsed")
		h.do(t, "POST", "/v1/"+en.GetName()+":activate", s.partnerToken(t, h), map[string]any{"member_id": "late-1"}).
			wantError(t, "activate a lapsed enrollment over HTTP", http.StatusBadRequest, "lapsed")
		_, err = h.partner.CancelEnrollment(pctx, &enrollv1.CancelEnrollmentRequest{Name: en.GetName()})
		wantCode(t, "cancel a lapsed enrollment", err, codes.FailedPrecondition, "LAPSED")

		// Redeem-by: 180 days after issuance, exclusive.
		h.clock.Set(redeemBy.Add(-time.Second))
		for _, ref := range []string{"APP-0002", "APP-0003"} {
			chk, err := h.redeem.CheckCode(bg, &enrollv1.CheckCodeRequest{Code: s.codes[ref]})
			if err != nil || chk.GetState() != enrollv1.CodeState_CODE_STATE_ISSUED {
				t.Fatalf("CheckCode %s one second before redeem-by: %v, %v; want ISSUED", ref, chk, err)
			}
		}
		last := s.redeemRef(t, h, "APP-0003") // the last second still counts
		if !last.GetRedeemTime().AsTime().Equal(redeemBy.Add(-time.Second)) {
			t.Fatalf("redeem time %v", last.GetRedeemTime().AsTime())
		}

		h.clock.Set(redeemBy)
		chk, err := h.redeem.CheckCode(bg, &enrollv1.CheckCodeRequest{Code: s.codes["APP-0002"]})
		if err != nil || chk.GetState() != enrollv1.CodeState_CODE_STATE_EXPIRED {
			t.Fatalf("CheckCode at redeem-by: %v, %v; want EXPIRED", chk, err)
		}
		if st := status("APP-0002"); st.GetCodeState() != enrollv1.CodeState_CODE_STATE_EXPIRED || st.GetEnrollment() != nil {
			t.Fatalf("status at redeem-by: %v; want EXPIRED without enrollment", st)
		}
		ver, err := h.partner.VerifyCode(s.partnerCtx(t, h), &enrollv1.VerifyCodeRequest{Code: s.codes["APP-0002"]})
		if err != nil || ver.GetState() != enrollv1.CodeState_CODE_STATE_EXPIRED {
			t.Fatalf("VerifyCode at redeem-by: %v, %v; want EXPIRED", ver, err)
		}
		_, err = h.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: s.codes["APP-0002"]})
		wantCode(t, "redeem an expired code", err, codes.FailedPrecondition, "expired", "2026-07-30")
		h.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": s.codes["APP-0002"]}).
			wantError(t, "redeem an expired code over HTTP", http.StatusBadRequest, "expired")

		// A code redeemed in time is unaffected by its redeem-by instant passing.
		if st := status("APP-0003"); st.GetCodeState() != enrollv1.CodeState_CODE_STATE_REDEEMED ||
			st.GetEnrollment().GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_PENDING {
			t.Fatalf("status of the code redeemed at the last second: %v", st)
		}
		// Stored states do not move without a sweep: the counters still show the stored ones.
		wantCounts(t, h, h.adminCtx(t), s.incident,
			counts{issued: 3, outstanding: 1, redeemed: 2, pending: 2}, counts{issued: 1, outstanding: 1})
	})
}
