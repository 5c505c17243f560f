package server_test

import (
	"context"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// ReissueCode revokes the old code and issues one new code in a one-code batch, whose export
// is that code, which redeems; the member cancels with the code, the partner sees it, and a
// second cancel is refused.
func TestE2ELifecycle4ReissueAndCancel(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		s := seed(t, h, "reissue-breach", "reissue-monitor")
		actx, pctx, bg := h.adminCtx(t), s.partnerCtx(t, h), context.Background()
		subject := s.incident + "/subjects/APP-0002"
		old := s.codes["APP-0002"]

		_, err := h.admin.ReissueCode(actx, &enrollv1.ReissueCodeRequest{Subject: subject, Reason: "  "})
		wantCode(t, "ReissueCode without a reason", err, codes.InvalidArgument, "reason")
		_, err = h.admin.ReissueCode(actx, &enrollv1.ReissueCodeRequest{Subject: s.incident + "/subjects/NOBODY", Reason: "x"})
		wantCode(t, "ReissueCode of an unknown subject", err, codes.NotFound, "NOBODY")

		re, err := h.admin.ReissueCode(actx, &enrollv1.ReissueCodeRequest{Subject: subject, Reason: "letter returned undeliverable"})
		wantCode(t, "ReissueCode", err, codes.OK)
		b := re.GetBatch()
		want := &enrollv1.Batch{
			Name: b.GetName(), Cohort: s.incident + "/cohorts/credit-applicants", State: enrollv1.BatchState_BATCH_STATE_SUCCEEDED,
			Total: 1, Issued: 1, RedeemByTime: timestamppb.New(redeemBy), Creator: "clients/" + h.adminID,
			CreateTime: timestamppb.New(t0), UpdateTime: timestamppb.New(t0),
		}
		if !proto.Equal(b, want) || !re.GetRevokeTime().AsTime().Equal(t0) {
			t.Fatalf("ReissueCode: %v, want batch %v revoked at %v", re, want, t0)
		}
		if b.GetName() == s.batches["credit-applicants"].GetName() {
			t.Fatalf("the reissue reused the cohort's batch %s", b.GetName())
		}

		// The old code is dead, and says so.
		_, err = h.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: old})
		wantCode(t, "redeem the superseded code", err, codes.FailedPrecondition, "revoked")
		h.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": old}).wantError(t, "redeem the superseded code over REST", http.StatusBadRequest, "revoked")
		chk, err := h.redeem.CheckCode(bg, &enrollv1.CheckCodeRequest{Code: old})
		if err != nil || chk.GetState() != enrollv1.CodeState_CODE_STATE_REVOKED {
			t.Fatalf("CheckCode of the superseded code: %v, %v; want REVOKED", chk, err)
		}

		// The one-code batch exports exactly one new code, for that subject; it redeems.
		rows := exportCodes(t, h, actx, b.GetName())
		if len(rows) != 1 || rows[0].GetExternalRef() != "APP-0002" || rows[0].GetCohort() != "credit-applicants" || rows[0].GetCode() == old {
			t.Fatalf("export of the reissue batch: %v; want one new code for APP-0002", rows)
		}
		fresh := rows[0].GetCode()
		if c, err := enrollcodes.Parse(fresh); err != nil || c.String() != fresh {
			t.Fatalf("reissued code %q: %v", fresh, err)
		}
		wantCounts(t, h, actx, s.incident, counts{issued: 4, outstanding: 3, revoked: 1}, counts{issued: 1, outstanding: 1})
		red, err := h.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: typed(fresh)})
		wantCode(t, "redeem the reissued code", err, codes.OK)
		en := red.GetEnrollment()
		_, err = h.admin.ReissueCode(actx, &enrollv1.ReissueCodeRequest{Subject: subject, Reason: "again"})
		wantCode(t, "reissue a redeemed code", err, codes.FailedPrecondition, "redeemed")

		// The member cancels with the code.
		_, err = h.redeem.CancelOwnEnrollment(bg, &enrollv1.CancelOwnEnrollmentRequest{Code: s.codes["APP-0001"]})
		wantCode(t, "cancel with an unredeemed code", err, codes.FailedPrecondition, "not been redeemed")
		_, err = h.redeem.CancelOwnEnrollment(bg, &enrollv1.CancelOwnEnrollmentRequest{Code: old})
		wantCode(t, "cancel with the superseded code", err, codes.FailedPrecondition)
		can, err := h.redeem.CancelOwnEnrollment(bg, &enrollv1.CancelOwnEnrollmentRequest{Code: fresh, Reason: "moved abroad"})
		wantCode(t, "CancelOwnEnrollment", err, codes.OK)
		if got := can.GetEnrollment(); got.GetName() != en.GetName() || got.GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_CANCELLED ||
			!got.GetCancelTime().AsTime().Equal(t0) || got.GetMemberId() != "" {
			t.Fatalf("CancelOwnEnrollment: %v", got)
		}
		seen, err := h.partner.GetEnrollment(pctx, &enrollv1.GetEnrollmentRequest{Name: en.GetName()})
		if err != nil || seen.GetEnrollment().GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_CANCELLED {
			t.Fatalf("the partner reads %v, %v; want CANCELLED", seen, err)
		}
		_, err = h.redeem.CancelOwnEnrollment(bg, &enrollv1.CancelOwnEnrollmentRequest{Code: fresh})
		wantCode(t, "cancel twice", err, codes.FailedPrecondition, "CANCELLED")
		h.do(t, "POST", "/v1/redemption:cancel", "", map[string]any{"code": fresh}).
			wantError(t, "cancel twice over REST", http.StatusBadRequest, "CANCELLED")
		st, err := h.redeem.GetEnrollmentStatus(bg, &enrollv1.GetEnrollmentStatusRequest{Code: fresh})
		if err != nil || st.GetCodeState() != enrollv1.CodeState_CODE_STATE_REDEEMED || st.GetEnrollment().GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_CANCELLED {
			t.Fatalf("status after the cancel: %v, %v", st, err)
		}
		wantCounts(t, h, actx, s.incident, counts{issued: 4, outstanding: 2, redeemed: 1, revoked: 1, cancelled: 1}, counts{issued: 1, outstanding: 1})

		var feed lc4Feed
		lc4WantEvents(t, "partner feed", feed.poll(t, h, pctx),
			lc4Ev{"code.reissued", subject}, lc4Ev{"enrollment.created", en.GetName()}, lc4Ev{"enrollment.cancelled", en.GetName()})

		// Over REST, a member cancels the other way round: redeem, then cancel.
		h.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": s.codes["PP-1001"]}).ok(t, "redeem PP-1001")
		c := h.do(t, "POST", "/v1/redemption:cancel", "", map[string]any{"code": typed(s.codes["PP-1001"]), "reason": "no longer needed"}).ok(t, "cancel over REST")
		if str(c, "enrollment", "state") != "ENROLLMENT_STATE_CANCELLED" {
			t.Fatalf("cancel over REST: %v", c)
		}
		h.do(t, "POST", "/v1/redemption:cancel", "", map[string]any{"code": s.codes["PP-1001"]}).
			wantError(t, "cancel twice over REST", http.StatusBadRequest, "CANCELLED")
	})
}
