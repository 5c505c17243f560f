package server_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// Retries with one request_id run once and get the first outcome back, errors included; the
// same request_id on a different request is refused; the same over REST with Idempotency-Key.
func TestE2ELifecycle4Idempotency(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		// A per-address budget of 3 failed look-ups makes every counted miss visible.
		h := start(t, e, t0, lc4CodeLimits("3/1m", lc4GenerousGlobal))
		s := seed(t, h, "idem-breach", "idem-monitor")
		pctx := s.partnerCtx(t, h)
		actx := h.adminCtx(t)
		person := lc4From(t, h, "127.0.0.2")
		enrollments := func() []*enrollv1.Enrollment {
			t.Helper()
			l, err := h.partner.ListEnrollments(pctx, &enrollv1.ListEnrollmentsRequest{PageSize: 100})
			wantCode(t, "ListEnrollments", err, codes.OK)
			return l.GetEnrollments()
		}

		// RedeemCode ten times with one request_id: one enrollment, ten identical answers.
		rid := "redeem-" + lc4Nonce(t)
		var first *enrollv1.RedeemCodeResponse
		for i := range 10 {
			resp, err := person.redeem.RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: s.codes["APP-0001"], RequestId: rid})
			wantCode(t, "RedeemCode retry", err, codes.OK)
			if i == 0 {
				first = resp
			} else if !proto.Equal(resp, first) {
				t.Fatalf("retry %d: %v, want the first answer %v", i, resp, first)
			}
		}
		if en := enrollments(); len(en) != 1 || en[0].GetName() != first.GetEnrollment().GetName() {
			t.Fatalf("enrollments after ten retries: %v, want only %s", en, first.GetEnrollment().GetName())
		}
		wantCounts(t, h, actx, s.incident, counts{issued: 3, outstanding: 2, redeemed: 1, pending: 1}, counts{issued: 1, outstanding: 1})

		// The same request_id for another code is refused, and nothing happens to that code.
		_, err := person.redeem.RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: s.codes["APP-0002"], RequestId: rid})
		wantCode(t, "request_id reused for another code", err, codes.InvalidArgument, "request_id", "different request")
		chk, err := person.redeem.CheckCode(context.Background(), &enrollv1.CheckCodeRequest{Code: s.codes["APP-0002"]})
		if err != nil || chk.GetState() != enrollv1.CodeState_CODE_STATE_ISSUED {
			t.Fatalf("the other code after the refused reuse: %v, %v; want ISSUED", chk, err)
		}

		// ActivateEnrollment ten times with one request_id: one state change.
		aid := "activate-" + lc4Nonce(t)
		name := first.GetEnrollment().GetName()
		var act *enrollv1.ActivateEnrollmentResponse
		for i := range 10 {
			resp, err := h.partner.ActivateEnrollment(pctx, &enrollv1.ActivateEnrollmentRequest{Name: name, MemberId: "M-IDEM-1", RequestId: aid})
			wantCode(t, "ActivateEnrollment retry", err, codes.OK)
			if i == 0 {
				act = resp
			} else if !proto.Equal(resp, act) {
				t.Fatalf("activation retry %d: %v, want %v", i, resp, act)
			}
		}
		if act.GetEnrollment().GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_ACTIVE {
			t.Fatalf("activation: %v", act)
		}
		wantCounts(t, h, actx, s.incident, counts{issued: 3, outstanding: 2, redeemed: 1, active: 1}, counts{issued: 1, outstanding: 1})
		_, err = h.partner.ActivateEnrollment(pctx, &enrollv1.ActivateEnrollmentRequest{Name: name, MemberId: "M-IDEM-2", RequestId: aid})
		wantCode(t, "request_id reused with another member id", err, codes.InvalidArgument, "different request")
		// Without the request_id the second activation is a new request, and fails as one.
		_, err = h.partner.ActivateEnrollment(pctx, &enrollv1.ActivateEnrollmentRequest{Name: name, MemberId: "M-IDEM-1"})
		wantCode(t, "activation without request_id", err, codes.FailedPrecondition, "ACTIVE")

		// An error is remembered too: an unknown code, retried ten times, is one look-up.
		nid, unknown := "unknown-"+lc4Nonce(t), lc4WrongCode(t)
		var firstErr *status.Status
		for i := range 10 {
			_, err := person.redeem.RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: unknown, RequestId: nid})
			wantCode(t, "retry of an unknown code", err, codes.NotFound, "no such code")
			if i == 0 {
				firstErr = status.Convert(err)
			} else if st := status.Convert(err); st.Message() != firstErr.Message() {
				t.Fatalf("retry %d of the unknown code: %q, want %q", i, st.Message(), firstErr.Message())
			}
		}
		if n := strings.Count(h.logs.String(), lc4RedeemNotFound); n != 10 {
			t.Fatalf("%d NotFound answers logged, want 10", n)
		}
		// Budget 3: the retries cost one, so two more guesses are answered and the next is not.
		for range 2 {
			_, err := person.redeem.CheckCode(context.Background(), &enrollv1.CheckCodeRequest{Code: lc4WrongCode(t)})
			wantCode(t, "fresh guess after the retries", err, codes.NotFound, "no such code")
		}
		_, err = person.redeem.CheckCode(context.Background(), &enrollv1.CheckCodeRequest{Code: lc4WrongCode(t)})
		wantCode(t, "guess past the budget", err, codes.ResourceExhausted, "try again in")

		// Concurrent retries: each gets the one answer, or is told to retry shortly; never a
		// second enrollment.
		cid := "concurrent-" + lc4Nonce(t)
		other := lc4From(t, h, "127.0.0.3")
		var (
			wg    sync.WaitGroup
			gate  = make(chan struct{})
			resps = make([]*enrollv1.RedeemCodeResponse, 10)
			errs  = make([]error, 10)
		)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				resps[i], errs[i] = other.redeem.RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: s.codes["APP-0003"], RequestId: cid})
			}()
		}
		close(gate)
		wg.Wait()
		var won *enrollv1.RedeemCodeResponse
		for i := range 10 {
			for tries := 0; status.Code(errs[i]) == codes.Aborted; tries++ {
				if tries > 100 {
					t.Fatalf("retry %d is still being processed: %v", i, errs[i])
				}
				resps[i], errs[i] = other.redeem.RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: s.codes["APP-0003"], RequestId: cid})
			}
			wantCode(t, "concurrent retry", errs[i], codes.OK)
			if won == nil {
				won = resps[i]
			} else if !proto.Equal(resps[i], won) {
				t.Fatalf("concurrent retries got different answers: %v and %v", resps[i], won)
			}
		}
		if len(enrollments()) != 2 {
			t.Fatalf("enrollments after concurrent retries: %v, want 2", enrollments())
		}

		// REST, Idempotency-Key header.
		rest := lc4From(t, h, "127.0.0.4")
		key := "rest-" + lc4Nonce(t)
		var body []byte
		for i := range 10 {
			r := rest.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": s.codes["PP-1001"]}, "Idempotency-Key", key)
			r.ok(t, "REST redeem retry")
			if i == 0 {
				body = r.body
			} else if !bytes.Equal(r.body, body) {
				t.Fatalf("REST retry %d: %s, want %s", i, r.body, body)
			}
		}
		rest.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": s.codes["APP-0002"]}, "Idempotency-Key", key).
			wantError(t, "Idempotency-Key reused for another code", http.StatusBadRequest, "different request")
		pp := str(lc4Object(t, body), "enrollment", "name")
		ptok := s.partnerToken(t, h)
		var actBody []byte
		akey := "rest-act-" + lc4Nonce(t)
		for i := range 10 {
			r := rest.do(t, "POST", "/v1/"+pp+":activate", ptok, map[string]any{"member_id": "M-IDEM-3"}, "Idempotency-Key", akey)
			r.ok(t, "REST activate retry")
			if i == 0 {
				actBody = r.body
			} else if !bytes.Equal(r.body, actBody) {
				t.Fatalf("REST activation retry %d: %s, want %s", i, r.body, actBody)
			}
		}
		wantCounts(t, h, actx, s.incident, counts{issued: 3, outstanding: 1, redeemed: 2, pending: 1, active: 1}, counts{issued: 1, redeemed: 1, active: 1})
		ukey := "rest-unknown-" + lc4Nonce(t)
		code404 := lc4WrongCode(t)
		var nf []byte
		for i := range 5 {
			r := rest.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": code404}, "Idempotency-Key", ukey)
			r.wantError(t, "REST retry of an unknown code", http.StatusNotFound, "no such code")
			if i == 0 {
				nf = r.body
			} else if !bytes.Equal(r.body, nf) {
				t.Fatalf("REST retry %d of the unknown code: %s, want %s", i, r.body, nf)
			}
		}
		// The address spent one of its 3 failed look-ups on them.
		for range 2 {
			rest.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": lc4WrongCode(t)}).wantError(t, "REST guess", http.StatusNotFound)
		}
		lc4RetryAfter(t, "REST guess past the budget", rest.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": lc4WrongCode(t)}))
	})
}

func lc4Object(t testing.TB, body []byte) map[string]any {
	t.Helper()
	return httpResp{status: http.StatusOK, body: body}.object(t, "body")
}
