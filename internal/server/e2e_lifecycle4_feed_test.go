package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// The partner follows its change feed with after_sequence across a server restart on the same
// database: every event exactly once, in order, sequences 1..n without gaps, over gRPC and
// REST alike.
func TestE2ELifecycle4FeedAcrossRestart(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		s := seed(t, h, "feed-breach", "feed-monitor")
		bg := context.Background()
		subject := func(ref string) string { return s.incident + "/subjects/" + ref }
		var feed lc4Feed
		if got := feed.poll(t, h, s.partnerCtx(t, h)); len(got) != 0 {
			t.Fatalf("feed before anything happened: %v", got)
		}

		// Before the restart: redeem, activate, redeem + member cancel, revoke, reissue.
		e1 := s.redeemRef(t, h, "APP-0001")
		h.clock.Advance(time.Minute)
		if _, err := h.partner.ActivateEnrollment(s.partnerCtx(t, h), &enrollv1.ActivateEnrollmentRequest{Name: e1.GetName(), MemberId: "FEED-1"}); err != nil {
			t.Fatalf("ActivateEnrollment: %v", err)
		}
		// The partner reads half-way: a reader in the middle of the stream loses nothing.
		lc4WantEvents(t, "first read", feed.poll(t, h, s.partnerCtx(t, h)),
			lc4Ev{"enrollment.created", e1.GetName()}, lc4Ev{"enrollment.activated", e1.GetName()})
		e2 := s.redeemRef(t, h, "PP-1001")
		h.clock.Advance(time.Minute)
		if _, err := h.redeem.CancelOwnEnrollment(bg, &enrollv1.CancelOwnEnrollmentRequest{Code: s.codes["PP-1001"], Reason: "changed my mind"}); err != nil {
			t.Fatalf("CancelOwnEnrollment: %v", err)
		}
		actx := h.adminCtx(t)
		if _, err := h.admin.RevokeCode(actx, &enrollv1.RevokeCodeRequest{Subject: subject("APP-0002"), Reason: "reported stolen"}); err != nil {
			t.Fatalf("RevokeCode: %v", err)
		}
		re, err := h.admin.ReissueCode(actx, &enrollv1.ReissueCodeRequest{Subject: subject("APP-0003"), Reason: "letter returned"})
		if err != nil {
			t.Fatalf("ReissueCode: %v", err)
		}
		lc4WantEvents(t, "second read", feed.poll(t, h, s.partnerCtx(t, h)),
			lc4Ev{"enrollment.created", e2.GetName()}, lc4Ev{"enrollment.cancelled", e2.GetName()},
			lc4Ev{"code.revoked", subject("APP-0002")}, lc4Ev{"code.reissued", subject("APP-0003")})
		before := feed.after

		// Restart on the same database.
		if _, err := h.stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		h.clock.Advance(time.Hour)
		h2 := lc4Replica(t, h)
		pctx := s.partnerCtx(t, h2)
		if got := feed.poll(t, h2, pctx); len(got) != 0 {
			t.Fatalf("after the restart, nothing new happened, but the feed returned %v", got)
		}

		// After the restart: the reissued code redeems and activates, the revoked subject gets
		// a new code, the first member cancels.
		rows := exportCodes(t, h2, h2.adminCtx(t), re.GetBatch().GetName())
		if len(rows) != 1 || rows[0].GetExternalRef() != "APP-0003" {
			t.Fatalf("export of the reissue batch: %v", rows)
		}
		red, err := h2.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: rows[0].GetCode()})
		if err != nil {
			t.Fatalf("redeem the reissued code after the restart: %v", err)
		}
		e3 := red.GetEnrollment()
		if _, err := h2.partner.ActivateEnrollment(pctx, &enrollv1.ActivateEnrollmentRequest{Name: e3.GetName(), MemberId: "FEED-3"}); err != nil {
			t.Fatalf("ActivateEnrollment after the restart: %v", err)
		}
		if _, err := h2.admin.ReissueCode(h2.adminCtx(t), &enrollv1.ReissueCodeRequest{Subject: subject("APP-0002"), Reason: "new letter after theft"}); err != nil {
			t.Fatalf("ReissueCode of the revoked subject: %v", err)
		}
		if _, err := h2.redeem.CancelOwnEnrollment(bg, &enrollv1.CancelOwnEnrollmentRequest{Code: s.codes["APP-0001"]}); err != nil {
			t.Fatalf("CancelOwnEnrollment after the restart: %v", err)
		}

		// The partner resumes from its last sequence, over REST this time.
		var after []*enrollv1.EnrollmentEvent
		for cursor := before; ; {
			r := h2.do(t, "GET", fmt.Sprintf("/v1/partner/events?after_sequence=%d&page_size=3", cursor), s.partnerToken(t, h2), nil)
			page := r.ok(t, "REST feed")
			evs, _ := page["events"].([]any)
			last, err := strconv.ParseInt(fmt.Sprint(page["last_sequence"]), 10, 64)
			if err != nil {
				t.Fatalf("REST feed: last_sequence %v: %v", page["last_sequence"], err)
			}
			if len(evs) == 0 {
				if last != cursor {
					t.Fatalf("REST feed: empty page after %d says last_sequence %d", cursor, last)
				}
				break
			}
			for _, raw := range evs {
				m, _ := raw.(map[string]any)
				seq, err := strconv.ParseInt(fmt.Sprint(m["sequence"]), 10, 64)
				if err != nil || seq != cursor+1 {
					t.Fatalf("REST feed after %d: event %v, want sequence %d", cursor, m, cursor+1)
				}
				cursor = seq
				after = append(after, &enrollv1.EnrollmentEvent{Sequence: seq, Type: str(m, "type"), Resource: str(m, "resource"), Incident: str(m, "incident")})
			}
			if last != cursor {
				t.Fatalf("REST feed: last_sequence %d, want %d", last, cursor)
			}
		}
		lc4WantEvents(t, "read after the restart", after,
			lc4Ev{"enrollment.created", e3.GetName()}, lc4Ev{"enrollment.activated", e3.GetName()},
			lc4Ev{"code.reissued", subject("APP-0002")}, lc4Ev{"enrollment.cancelled", e1.GetName()})

		// The whole feed, read again from 0 in one page, is what the partner assembled: 1..n.
		all, err := h2.partner.ListEnrollmentEvents(pctx, &enrollv1.ListEnrollmentEventsRequest{PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if n := int64(len(all.GetEvents())); n != 10 || all.GetLastSequence() != n {
			t.Fatalf("whole feed: %d events, last_sequence %d; want 10 and 10", n, all.GetLastSequence())
		}
		for i, ev := range all.GetEvents() {
			if ev.GetSequence() != int64(i+1) || ev.GetIncident() != s.incident {
				t.Fatalf("whole feed event %d: %v", i, ev)
			}
			var seen *enrollv1.EnrollmentEvent
			if i < len(feed.events) {
				seen = feed.events[i]
			} else {
				seen = after[i-len(feed.events)]
				seen.Time = ev.GetTime() // REST events were compared without their time
			}
			if !proto.Equal(ev, seen) {
				t.Fatalf("whole feed event %d: %v, but the partner saw %v", i, ev, seen)
			}
		}
		// Event times are the fake clock at each change, before and after the restart.
		if got := all.GetEvents()[0].GetTime().AsTime(); !got.Equal(t0) {
			t.Fatalf("first event at %v, want %v", got, t0)
		}
		if got, want := all.GetEvents()[9].GetTime().AsTime(), t0.Add(2*time.Minute+time.Hour); !got.Equal(want) {
			t.Fatalf("last event at %v, want %v", got, want)
		}
		// A reader beyond the end gets nothing, and negative cursors are refused.
		if r, err := h2.partner.ListEnrollmentEvents(pctx, &enrollv1.ListEnrollmentEventsRequest{AfterSequence: 10}); err != nil || len(r.GetEvents()) != 0 || r.GetLastSequence() != 10 {
			t.Fatalf("feed after the end: %v, %v", r, err)
		}
		_, err = h2.partner.ListEnrollmentEvents(pctx, &enrollv1.ListEnrollmentEventsRequest{AfterSequence: -1})
		wantCode(t, "negative after_sequence", err, codes.InvalidArgument, "after_sequence")
		h2.do(t, "GET", "/v1/partner/events", h2.adminToken(t), nil).wantError(t, "admin on the partner feed", http.StatusForbidden)
	})
}
