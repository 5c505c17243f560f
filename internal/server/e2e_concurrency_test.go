package server_test

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// Fifty people redeem one code at the same instant: exactly one wins, everyone else is told
// it was already redeemed, and exactly one enrollment and one redemption are recorded.
func TestE2EConcurrentRedeemOneWinner(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		s := seed(t, h, "race-breach", "race-monitor")
		code := s.codes["APP-0002"]

		const n = 50
		var (
			wg     sync.WaitGroup
			gate   = make(chan struct{})
			errs   = make([]error, n)
			winner = make([]*enrollv1.Enrollment, n)
		)
		for i := range n {
			in := code
			if i%2 == 1 {
				in = typed(code) // the same code, typed differently
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				resp, err := h.redeem.RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: in})
				errs[i], winner[i] = err, resp.GetEnrollment()
			}()
		}
		close(gate)
		wg.Wait()

		var won *enrollv1.Enrollment
		byCode := map[codes.Code]int{}
		for i, err := range errs {
			st, _ := status.FromError(err)
			byCode[st.Code()]++
			switch st.Code() {
			case codes.OK:
				won = winner[i]
			case codes.AlreadyExists:
			default:
				t.Errorf("redeemer %d: %v %q; want OK or AlreadyExists", i, st.Code(), st.Message())
			}
		}
		if byCode[codes.OK] != 1 || byCode[codes.AlreadyExists] != n-1 {
			t.Fatalf("outcomes %v; want exactly 1 OK and %d AlreadyExists", byCode, n-1)
		}

		list, err := h.partner.ListEnrollments(s.partnerCtx(t, h), &enrollv1.ListEnrollmentsRequest{PageSize: 1000})
		wantCode(t, "ListEnrollments", err, codes.OK)
		if len(list.GetEnrollments()) != 1 || list.GetEnrollments()[0].GetName() != won.GetName() {
			t.Fatalf("enrollments %v; want only the winner's %s", list.GetEnrollments(), won.GetName())
		}
		wantCounts(t, h, h.adminCtx(t), s.incident,
			counts{issued: 3, outstanding: 2, redeemed: 1, pending: 1}, counts{issued: 1, outstanding: 1})
	})
}
