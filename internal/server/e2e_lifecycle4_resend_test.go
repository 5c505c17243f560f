package server_test

import (
	"bytes"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// lc4ResendFloor is the service's minimum answer time for a lost-code request.
const lc4ResendFloor = 150 * time.Millisecond

// A lost-code request gets the same answer, byte for byte, in about the same time, whether or
// not the details match someone eligible; requests are budgeted per address; a malformed one
// is 400.
func TestE2ELifecycle4ResendRevealsNothing(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0, lc4ResendLimit("12/1h"))
		seed(t, h, "resend-breach", "resend-monitor")
		client := lc4From(t, h, "127.0.0.2")
		// Chen (APP-0002) is eligible, with an unredeemed code; as people type it.
		eligible := map[string]any{"last_name": "  chen ", "date_of_birth": "1990-07-01", "ssn": "9102", "postal_code": "10001-0001"}
		stranger := map[string]any{"last_name": "Chen", "date_of_birth": "1990-07-01", "ssn": "9109", "postal_code": "10001"}

		const samples = 5
		var bodies [2][]httpResp
		var took [2][]time.Duration
		for i := range 2 * samples {
			which := i % 2
			req := []map[string]any{eligible, stranger}[which]
			began := time.Now()
			r := client.do(t, "POST", "/v1/redemption:resend", "", req)
			took[which] = append(took[which], time.Since(began))
			bodies[which] = append(bodies[which], r)
		}
		ref := bodies[0][0]
		if ref.status != http.StatusOK || !bytes.Contains(ref.body, []byte("If these details match")) {
			t.Fatalf("resend answer: HTTP %d %s", ref.status, ref.body)
		}
		for which, rs := range bodies {
			for i, r := range rs {
				if r.status != ref.status || !bytes.Equal(r.body, ref.body) {
					t.Fatalf("answer %d for the %s: HTTP %d %q; want HTTP %d %q", i, []string{"eligible", "stranger"}[which], r.status, r.body, ref.status, ref.body)
				}
				if diff := lc4HeaderDiff(ref.header, r.header); diff != "" {
					t.Fatalf("answer %d for the %s: headers differ: %s", i, []string{"eligible", "stranger"}[which], diff)
				}
			}
		}
		med := func(ds []time.Duration) time.Duration {
			s := slices.Clone(ds)
			slices.Sort(s)
			return s[len(s)/2]
		}
		for which, ds := range took {
			for _, d := range ds {
				if d < lc4ResendFloor {
					t.Fatalf("a resend answer for the %s took %v, under the %v floor", []string{"eligible", "stranger"}[which], d, lc4ResendFloor)
				}
			}
		}
		m0, m1 := med(took[0]), med(took[1])
		t.Logf("resend timing: eligible median %v %v, stranger median %v %v", m0, took[0], m1, took[1])
		if diff := (m0 - m1).Abs(); diff > lc4ResendFloor/3 {
			t.Fatalf("median answer times differ by %v (eligible %v, stranger %v); want well under the %v floor", diff, m0, m1, lc4ResendFloor)
		}

		// The control: the eligible details did match (and were recorded for the mail house),
		// the stranger's did not. Otherwise the comparison above proves nothing.
		var matched, unmatched int64
		db := lc4SQL(t, h.db)
		if err := db.Raw("SELECT COUNT(*) FROM resend_requests WHERE subject_id IS NOT NULL").Scan(&matched).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Raw("SELECT COUNT(*) FROM resend_requests WHERE subject_id IS NULL").Scan(&unmatched).Error; err != nil {
			t.Fatal(err)
		}
		if matched != samples || unmatched != samples {
			t.Fatalf("resend requests recorded: %d matched, %d unmatched; want %d and %d", matched, unmatched, samples, samples)
		}

		// A malformed request (no last name) is 400 and says what is missing.
		client.do(t, "POST", "/v1/redemption:resend", "", map[string]any{"date_of_birth": "1990-07-01", "ssn": "9102", "postal_code": "10001"}).
			wantError(t, "resend without last name", http.StatusBadRequest, "last_name")

		// The address's budget: 12 per hour, 11 used; one more, then 429.
		client.do(t, "POST", "/v1/redemption:resend", "", stranger).ok(t, "last request of the budget")
		for _, req := range []map[string]any{eligible, stranger} {
			lc4RetryAfter(t, "resend past the budget", client.do(t, "POST", "/v1/redemption:resend", "", req), "lost-code requests")
		}
		// Another address is not affected.
		lc4From(t, h, "127.0.0.3").do(t, "POST", "/v1/redemption:resend", "", eligible).ok(t, "resend from another address")
	})
}

// lc4HeaderDiff names the headers that differ between two responses, other than the request id
// (unique per request by design) and Date (the wall clock).
func lc4HeaderDiff(a, b http.Header) string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for k := range keys {
		if k == "X-Request-Id" || k == "Date" {
			continue
		}
		if !slices.Equal(a.Values(k), b.Values(k)) {
			return k + ": " + a.Get(k) + " vs " + b.Get(k)
		}
	}
	return ""
}
