package server_test

import (
	"net/http"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// A partner can neither see nor change another partner's codes and enrollments: everything
// of theirs reads as not found, exactly like something that does not exist.
func TestE2EPartnerIsolation(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		a := seed(t, h, "inc-a", "partner-a")
		b := seed(t, h, "inc-b", "partner-b")
		actx, bctx := a.partnerCtx(t, h), b.partnerCtx(t, h)

		ea := a.redeemRef(t, h, "APP-0001")
		bPending := b.redeemRef(t, h, "APP-0001")
		bActive := b.redeemRef(t, h, "APP-0002")
		if _, err := h.partner.ActivateEnrollment(bctx, &enrollv1.ActivateEnrollmentRequest{Name: bActive.GetName(), MemberId: "B-1"}); err != nil {
			t.Fatalf("B activates its own: %v", err)
		}
		before := map[string]*enrollv1.Enrollment{}
		for _, en := range []*enrollv1.Enrollment{bPending, bActive} {
			got, err := h.partner.GetEnrollment(bctx, &enrollv1.GetEnrollmentRequest{Name: en.GetName()})
			wantCode(t, "B reads its own", err, codes.OK)
			before[en.GetName()] = got.GetEnrollment()
		}

		// What A is told about B's things must be what it is told about nothing at all.
		_, err := h.partner.GetEnrollment(actx, &enrollv1.GetEnrollmentRequest{Name: "enrollments/doesnotexist"})
		wantCode(t, "A reads a missing enrollment", err, codes.NotFound)
		_, err = h.partner.VerifyCode(actx, &enrollv1.VerifyCodeRequest{Code: unknownCode(t)})
		wantCode(t, "A verifies an unknown code", err, codes.NotFound)
		unknownMsg := status.Convert(err).Message()

		for name := range before {
			_, err := h.partner.GetEnrollment(actx, &enrollv1.GetEnrollmentRequest{Name: name})
			wantCode(t, "A gets B's", err, codes.NotFound, "not found")
			_, err = h.partner.ActivateEnrollment(actx, &enrollv1.ActivateEnrollmentRequest{Name: name, MemberId: "A-evil"})
			wantCode(t, "A activates B's", err, codes.NotFound, "not found")
			_, err = h.partner.CancelEnrollment(actx, &enrollv1.CancelEnrollmentRequest{Name: name, Reason: "mine now"})
			wantCode(t, "A cancels B's", err, codes.NotFound, "not found")
			h.do(t, "GET", "/v1/"+name, a.partnerToken(t, h), nil).wantError(t, "A gets B's over HTTP", http.StatusNotFound, "not found")
			h.do(t, "POST", "/v1/"+name+":cancel", a.partnerToken(t, h), "{}").wantError(t, "A cancels B's over HTTP", http.StatusNotFound, "not found")
		}
		for name, want := range before {
			got, err := h.partner.GetEnrollment(bctx, &enrollv1.GetEnrollmentRequest{Name: name})
			wantCode(t, "B re-reads its own", err, codes.OK)
			if !proto.Equal(got.GetEnrollment(), want) {
				t.Fatalf("B's enrollment changed by A's calls:\n got %v\nwant %v", got.GetEnrollment(), want)
			}
		}
		wantCounts(t, h, h.adminCtx(t), b.incident, counts{issued: 3, outstanding: 1, redeemed: 2, pending: 1, active: 1}, counts{issued: 1, outstanding: 1})

		for _, ref := range []string{"APP-0001", "APP-0003"} { // redeemed and unredeemed
			_, err := h.partner.VerifyCode(actx, &enrollv1.VerifyCodeRequest{Code: b.codes[ref]})
			wantCode(t, "A verifies B's code "+ref, err, codes.NotFound)
			if msg := status.Convert(err).Message(); msg != unknownMsg {
				t.Fatalf("A verifying B's code is told %q, but %q for an unknown code: that leaks existence", msg, unknownMsg)
			}
		}
		got, err := h.partner.VerifyCode(bctx, &enrollv1.VerifyCodeRequest{Code: b.codes["APP-0003"]})
		if err != nil || got.GetIncident() != b.incident {
			t.Fatalf("B verifies its own code: %v, %v", got, err)
		}

		for _, c := range []struct {
			ctx  *seeded
			want []string
		}{{a, []string{ea.GetName()}}, {b, sortedNames(bPending, bActive)}} {
			list, err := h.partner.ListEnrollments(c.ctx.partnerCtx(t, h), &enrollv1.ListEnrollmentsRequest{PageSize: 1000})
			wantCode(t, "ListEnrollments", err, codes.OK)
			var names []string
			for _, en := range list.GetEnrollments() {
				names = append(names, en.GetName())
				if en.GetPartner() != c.ctx.partner {
					t.Fatalf("%s lists an enrollment of %s", c.ctx.partner, en.GetPartner())
				}
			}
			if !slices.Equal(names, c.want) {
				t.Fatalf("%s lists %v, want %v", c.ctx.partner, names, c.want)
			}
		}
	})
}

func sortedNames(ens ...*enrollv1.Enrollment) []string {
	var out []string
	for _, e := range ens {
		out = append(out, e.GetName())
	}
	slices.Sort(out)
	return out
}
