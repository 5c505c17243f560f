package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// lc4SweepSettle is long enough for the server's sweeper (every second, real time) to have run
// at least twice.
const lc4SweepSettle = 2500 * time.Millisecond

// Deadlines become durable through the server's own sweeper, driven by the fake clock: codes
// past redeem-by move to EXPIRED in finance counts, a PENDING enrollment past its activation
// window to LAPSED, an ACTIVE one past coverage end to EXPIRED; the partner's feed says
// enrollment.lapsed, enrollment.expiring (once, 30 days before the end) and
// enrollment.expired.
func TestE2ELifecycle4ExpiryThroughSweeps(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0, lc4SweepEvery(time.Second))
		s := seed(t, h, "sweep-breach", "sweep-monitor")
		bg := context.Background()
		pending := s.redeemRef(t, h, "APP-0001")
		active := s.redeemRef(t, h, "APP-0003")
		if _, err := h.partner.ActivateEnrollment(s.partnerCtx(t, h), &enrollv1.ActivateEnrollmentRequest{Name: active.GetName(), MemberId: "SWEEP-3"}); err != nil {
			t.Fatal(err)
		}
		var feed lc4Feed
		lc4WantEvents(t, "feed before any deadline", feed.poll(t, h, s.partnerCtx(t, h)),
			lc4Ev{"enrollment.created", pending.GetName()}, lc4Ev{"enrollment.created", active.GetName()}, lc4Ev{"enrollment.activated", active.GetName()})

		// settle waits until GetCounts says what the sweeper should have recorded.
		settle := func(what string, credit, postpaid counts) {
			t.Helper()
			lc4Eventually(t, what, 10*time.Second, func() (bool, string) {
				got, err := h.reporting.GetCounts(h.adminCtx(t), &enrollv1.GetCountsRequest{Incident: s.incident})
				if err != nil {
					return false, err.Error()
				}
				return proto.Equal(got, expectedCounts(s.incident, h.clock.Now(), credit, postpaid)), fmt.Sprint(got)
			})
		}
		stored := func(state enrollv1.EnrollmentState) []string {
			t.Helper()
			l, err := h.partner.ListEnrollments(s.partnerCtx(t, h), &enrollv1.ListEnrollmentsRequest{State: state})
			wantCode(t, "ListEnrollments by stored state", err, codes.OK)
			var names []string
			for _, en := range l.GetEnrollments() {
				names = append(names, en.GetName())
			}
			return names
		}
		settle("counts before any deadline", counts{issued: 3, outstanding: 1, redeemed: 2, pending: 1, active: 1}, counts{issued: 1, outstanding: 1})

		// 30 days after redemption the pending enrollment lapses.
		h.clock.Set(activationDeadline)
		settle("a sweep past the activation window", counts{issued: 3, outstanding: 1, redeemed: 2, active: 1, lapsed: 1}, counts{issued: 1, outstanding: 1})
		if got := stored(enrollv1.EnrollmentState_ENROLLMENT_STATE_LAPSED); len(got) != 1 || got[0] != pending.GetName() {
			t.Fatalf("stored LAPSED enrollments: %v, want %s", got, pending.GetName())
		}

		// At redeem-by the unredeemed codes of both cohorts expire.
		h.clock.Set(redeemBy)
		settle("a sweep at redeem-by", counts{issued: 3, redeemed: 2, expired: 1, active: 1, lapsed: 1}, counts{issued: 1, expired: 1})
		_, err := h.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: s.codes["APP-0002"]})
		wantCode(t, "redeem a swept code", err, codes.FailedPrecondition, "expired")

		// One second before the 30-day notice window nothing is said...
		noticeAt := coverageEnd.Add(-30 * 24 * time.Hour)
		h.clock.Set(noticeAt.Add(-time.Second))
		time.Sleep(lc4SweepSettle)
		lc4WantEvents(t, "feed just before the notice window", feed.poll(t, h, s.partnerCtx(t, h)), lc4Ev{"enrollment.lapsed", pending.GetName()})
		// ...at 30 days before the end, enrollment.expiring goes out, once.
		h.clock.Set(noticeAt)
		var expiring []*enrollv1.EnrollmentEvent
		lc4Eventually(t, "enrollment.expiring", 10*time.Second, func() (bool, string) {
			expiring = append(expiring, feed.poll(t, h, s.partnerCtx(t, h))...)
			return len(expiring) > 0, fmt.Sprint(expiring)
		})
		h.clock.Set(coverageEnd.Add(-time.Hour))
		time.Sleep(lc4SweepSettle)
		expiring = append(expiring, feed.poll(t, h, s.partnerCtx(t, h))...)
		lc4WantEvents(t, "notice window", expiring, lc4Ev{"enrollment.expiring", active.GetName()})
		if got := expiring[0].GetTime().AsTime(); !got.Equal(noticeAt) {
			t.Fatalf("enrollment.expiring at %v, want %v (30 days before %v)", got, noticeAt, coverageEnd)
		}
		settle("the notice changes no count", counts{issued: 3, redeemed: 2, expired: 1, active: 1, lapsed: 1}, counts{issued: 1, expired: 1})

		// At coverage end the active enrollment expires.
		h.clock.Set(coverageEnd)
		settle("a sweep at coverage end", counts{issued: 3, redeemed: 2, expired: 1, enExpired: 1, lapsed: 1}, counts{issued: 1, expired: 1})
		if got := stored(enrollv1.EnrollmentState_ENROLLMENT_STATE_EXPIRED); len(got) != 1 || got[0] != active.GetName() {
			t.Fatalf("stored EXPIRED enrollments: %v, want %s", got, active.GetName())
		}
		if got := stored(enrollv1.EnrollmentState_ENROLLMENT_STATE_ACTIVE); len(got) != 0 {
			t.Fatalf("stored ACTIVE enrollments after coverage end: %v", got)
		}
		var ended []*enrollv1.EnrollmentEvent
		lc4Eventually(t, "enrollment.expired", 10*time.Second, func() (bool, string) {
			ended = append(ended, feed.poll(t, h, s.partnerCtx(t, h))...)
			return len(ended) > 0, fmt.Sprint(ended)
		})
		time.Sleep(lc4SweepSettle)
		ended = append(ended, feed.poll(t, h, s.partnerCtx(t, h))...)
		lc4WantEvents(t, "after coverage end", ended, lc4Ev{"enrollment.expired", active.GetName()})

		// The whole feed, with the times the sweeps recorded.
		all, err := h.partner.ListEnrollmentEvents(s.partnerCtx(t, h), &enrollv1.ListEnrollmentEventsRequest{PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		lc4WantEvents(t, "whole feed", all.GetEvents(),
			lc4Ev{"enrollment.created", pending.GetName()}, lc4Ev{"enrollment.created", active.GetName()}, lc4Ev{"enrollment.activated", active.GetName()},
			lc4Ev{"enrollment.lapsed", pending.GetName()}, lc4Ev{"enrollment.expiring", active.GetName()}, lc4Ev{"enrollment.expired", active.GetName()})
		for i, want := range []time.Time{t0, t0, t0, activationDeadline, noticeAt, coverageEnd} {
			if got := all.GetEvents()[i].GetTime().AsTime(); !got.Equal(want) {
				t.Fatalf("event %d (%s) at %v, want %v", i+1, all.GetEvents()[i].GetType(), got, want)
			}
		}
	})
}
