package server_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// Deadlines that follow from t0 and the default offer (24 months, 180 days, 30 days).
var (
	redeemBy           = time.Date(2026, 7, 30, 10, 0, 0, 0, time.UTC)
	activationDeadline = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	coverageEnd        = time.Date(2028, 1, 31, 10, 0, 0, 0, time.UTC)
)

// typed mangles a display code the way people type it: lower case, no hyphens, O for 0 and
// I for 1.
func typed(code string) string {
	return strings.NewReplacer("-", "", "0", "o", "1", "I").Replace(strings.ToLower(code))
}

func TestE2EFlowGRPC(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		s := seed(t, h, "breach-2026", "monitor-co")
		ctx := h.adminCtx(t)

		// Import: 5 people (APP-0003 and PP-1003 are one), one extra membership, one bad row
		// reported by its source line; a re-import changes nothing.
		imp := s.imported
		if imp.GetCreated() != 5 || imp.GetMembershipsAdded() != 1 || imp.GetUnchanged() != 0 ||
			len(imp.GetErrors()) != 1 || imp.GetErrors()[0].GetLine() != badLine || !strings.Contains(imp.GetErrors()[0].GetReason(), "last_name") {
			t.Fatalf("import: %v; want created 5, memberships_added 1, one error on line %d about last_name", imp, badLine)
		}
		again := h.importSubjects(t, ctx, s.incident, fixtureSubjects())
		if again.GetCreated() != 0 || again.GetMembershipsAdded() != 0 || again.GetUnchanged() != 6 || len(again.GetErrors()) != 1 {
			t.Fatalf("re-import: %v; want created 0, memberships_added 0, unchanged 6, 1 error", again)
		}

		_, err := h.admin.IssueCodes(ctx, &enrollv1.IssueCodesRequest{Cohort: s.incident + "/cohorts/prepaid-customers"})
		wantCode(t, "IssueCodes on a cohort not offered protection", err, codes.FailedPrecondition, "offer_applies")

		// Batches: the two-cohort person got one code, in the first cohort issued.
		for cohort, total := range map[string]int64{"credit-applicants": 3, "postpaid-customers": 1} {
			b := s.batches[cohort]
			want := &enrollv1.Batch{
				Name: b.GetName(), Cohort: s.incident + "/cohorts/" + cohort, State: enrollv1.BatchState_BATCH_STATE_SUCCEEDED,
				Total: total, Issued: total, RedeemByTime: timestamppb.New(redeemBy), Creator: "clients/" + h.adminID,
				CreateTime: timestamppb.New(t0), UpdateTime: timestamppb.New(t0),
			}
			if !strings.HasPrefix(b.GetName(), "batches/") || !proto.Equal(b, want) {
				t.Fatalf("IssueCodes %s: got %v, want %v", cohort, b, want)
			}
			got, err := h.admin.GetBatch(ctx, &enrollv1.GetBatchRequest{Name: b.GetName()})
			wantCode(t, "GetBatch", err, codes.OK)
			if !proto.Equal(got.GetBatch(), want) {
				t.Fatalf("GetBatch %s: got %v, want %v", cohort, got.GetBatch(), want)
			}
		}
		if b := h.issue(t, ctx, s.incident+"/cohorts/credit-applicants"); b.GetTotal() != 0 || b.GetIssued() != 0 || b.GetState() != enrollv1.BatchState_BATCH_STATE_SUCCEEDED {
			t.Fatalf("a second batch for a covered cohort must issue nothing: %v", b)
		}

		// Export: one row per code, display form, in subject order.
		wantRefs := map[string][]string{"credit-applicants": {"APP-0001", "APP-0002", "APP-0003"}, "postpaid-customers": {"PP-1001"}}
		for cohort, refs := range wantRefs {
			var got []string
			for _, r := range s.exported[cohort] {
				got = append(got, r.GetExternalRef())
				c, err := enrollcodes.Parse(r.GetCode())
				if err != nil || c.String() != r.GetCode() || r.GetCohort() != cohort || !r.GetRedeemByTime().AsTime().Equal(redeemBy) {
					t.Fatalf("export row %v: parse err %v", r, err)
				}
			}
			if !slices.Equal(got, refs) {
				t.Fatalf("export %s: refs %v, want %v", cohort, got, refs)
			}
		}
		if len(s.codes) != 4 {
			t.Fatalf("codes issued: %v, want 4 distinct subjects", s.codes)
		}

		// CheckCode accepts codes as people type them and describes the offer.
		sawFolded := false
		for ref, code := range s.codes {
			sawFolded = sawFolded || strings.ContainsAny(code, "01")
			got, err := h.redeem.CheckCode(context.Background(), &enrollv1.CheckCodeRequest{Code: typed(code)})
			wantCode(t, "CheckCode "+ref, err, codes.OK)
			if got.GetState() != enrollv1.CodeState_CODE_STATE_ISSUED || got.GetIncidentTitle() != s.title || got.GetCoverageMonths() != 24 ||
				!got.GetRedeemByTime().AsTime().Equal(redeemBy) || got.GetPartnerDisplayName() != "Monitor monitor-co" {
				t.Fatalf("CheckCode %s: %v", ref, got)
			}
			wantCohorts := []string{"Credit applicants"}
			if ref == "APP-0003" {
				wantCohorts = append(wantCohorts, "Postpaid customers")
			} else if ref == "PP-1001" {
				wantCohorts = []string{"Postpaid customers"}
			}
			var names []string
			for _, c := range got.GetCohorts() {
				names = append(names, c.GetDisplayName())
			}
			if !slices.Equal(names, wantCohorts) {
				t.Fatalf("CheckCode %s: cohorts %v, want %v", ref, names, wantCohorts)
			}
		}
		if !sawFolded {
			t.Logf("no issued code contained 0 or 1 this run; O/I folding was not exercised")
		}

		// Redeem three codes; the first with spaces instead of hyphens.
		red, err := h.redeem.RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: strings.ReplaceAll(s.codes["APP-0001"], "-", " ")})
		wantCode(t, "RedeemCode", err, codes.OK)
		e1 := red.GetEnrollment()
		wantPending := &enrollv1.Enrollment{
			Name: e1.GetName(), Incident: s.incident, Cohort: s.incident + "/cohorts/credit-applicants", Partner: s.partner,
			State: enrollv1.EnrollmentState_ENROLLMENT_STATE_PENDING, RedeemTime: timestamppb.New(t0),
			ActivationDeadlineTime: timestamppb.New(activationDeadline), ReadTime: timestamppb.New(t0),
		}
		if !strings.HasPrefix(e1.GetName(), "enrollments/") || !proto.Equal(e1, wantPending) {
			t.Fatalf("RedeemCode: got %v, want %v", e1, wantPending)
		}
		next, err := url.Parse(red.GetNextStepUri())
		if err != nil || next.Host != "monitor-co.example" || next.Query().Get("enrollment") != e1.GetName() {
			t.Fatalf("next_step_uri %q: want the partner's page naming %s", red.GetNextStepUri(), e1.GetName())
		}
		e3 := s.redeemRef(t, h, "APP-0003")
		e4 := s.redeemRef(t, h, "PP-1001")

		// The partner verifies and activates.
		pctx := s.partnerCtx(t, h)
		ver, err := h.partner.VerifyCode(pctx, &enrollv1.VerifyCodeRequest{Code: typed(s.codes["APP-0003"])})
		wantCode(t, "VerifyCode", err, codes.OK)
		wantVer := &enrollv1.VerifyCodeResponse{
			State: enrollv1.CodeState_CODE_STATE_REDEEMED, Incident: s.incident, RedeemByTime: timestamppb.New(redeemBy), CoverageMonths: 24,
			Cohorts: []string{s.incident + "/cohorts/credit-applicants", s.incident + "/cohorts/postpaid-customers"}, Enrollment: e3.GetName(),
		}
		if !proto.Equal(ver, wantVer) {
			t.Fatalf("VerifyCode: got %v, want %v", ver, wantVer)
		}
		ver, err = h.partner.VerifyCode(pctx, &enrollv1.VerifyCodeRequest{Code: s.codes["APP-0002"]})
		if err != nil || ver.GetState() != enrollv1.CodeState_CODE_STATE_ISSUED || ver.GetEnrollment() != "" {
			t.Fatalf("VerifyCode unredeemed: %v, %v", ver, err)
		}
		act, err := h.partner.ActivateEnrollment(pctx, &enrollv1.ActivateEnrollmentRequest{Name: e1.GetName(), MemberId: "M-1001"})
		wantCode(t, "ActivateEnrollment", err, codes.OK)
		wantActive := proto.Clone(wantPending).(*enrollv1.Enrollment)
		wantActive.State, wantActive.MemberId = enrollv1.EnrollmentState_ENROLLMENT_STATE_ACTIVE, "M-1001"
		wantActive.ActivateTime, wantActive.CoverageEndTime = timestamppb.New(t0), timestamppb.New(coverageEnd)
		if !proto.Equal(act.GetEnrollment(), wantActive) {
			t.Fatalf("ActivateEnrollment: got %v, want %v", act.GetEnrollment(), wantActive)
		}
		_, err = h.partner.ActivateEnrollment(pctx, &enrollv1.ActivateEnrollmentRequest{Name: e1.GetName(), MemberId: "M-1001"})
		wantCode(t, "activate twice", err, codes.FailedPrecondition, "ACTIVE")
		_, err = h.partner.ActivateEnrollment(pctx, &enrollv1.ActivateEnrollmentRequest{Name: e3.GetName(), MemberId: "M-1001"})
		wantCode(t, "member id bound twice", err, codes.AlreadyExists, "member_id")
		got, err := h.partner.GetEnrollment(pctx, &enrollv1.GetEnrollmentRequest{Name: e1.GetName()})
		if err != nil || !proto.Equal(got.GetEnrollment(), wantActive) {
			t.Fatalf("GetEnrollment: %v, %v; want %v", got, err, wantActive)
		}

		// ListEnrollments, one per page, sees each of the three once, in name order.
		var listed []string
		token := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatalf("ListEnrollments does not terminate: %v", listed)
			}
			page, err := h.partner.ListEnrollments(pctx, &enrollv1.ListEnrollmentsRequest{PageSize: 1, PageToken: token})
			wantCode(t, "ListEnrollments", err, codes.OK)
			if len(page.GetEnrollments()) > 1 {
				t.Fatalf("page_size 1 returned %d", len(page.GetEnrollments()))
			}
			for _, en := range page.GetEnrollments() {
				listed = append(listed, en.GetName())
			}
			if token = page.GetNextPageToken(); token == "" {
				break
			}
		}
		wantListed := []string{e1.GetName(), e3.GetName(), e4.GetName()}
		slices.Sort(wantListed)
		if !slices.Equal(listed, wantListed) {
			t.Fatalf("ListEnrollments: %v, want %v", listed, wantListed)
		}

		// The person sees the status; the member id is not theirs to see.
		st, err := h.redeem.GetEnrollmentStatus(context.Background(), &enrollv1.GetEnrollmentStatusRequest{Code: typed(s.codes["APP-0001"])})
		wantCode(t, "GetEnrollmentStatus", err, codes.OK)
		wantPublic := proto.Clone(wantActive).(*enrollv1.Enrollment)
		wantPublic.MemberId = ""
		if st.GetCodeState() != enrollv1.CodeState_CODE_STATE_REDEEMED || !proto.Equal(st.GetEnrollment(), wantPublic) || st.GetNextStepUri() != red.GetNextStepUri() {
			t.Fatalf("GetEnrollmentStatus: %v; want REDEEMED and %v", st, wantPublic)
		}

		// Finance counts, exactly; then a cancellation moves one enrollment.
		fc, err := h.admin.CreateClient(ctx, &enrollv1.CreateClientRequest{Client: &enrollv1.Client{Role: enrollv1.Role_ROLE_FINANCE, DisplayName: "finance"}})
		wantCode(t, "CreateClient finance", err, codes.OK)
		fctx := bearer(h.token(t, strings.TrimPrefix(fc.GetClient().GetName(), "clients/"), fc.GetClientSecret()))
		wantCounts(t, h, fctx, s.incident, counts{issued: 3, outstanding: 1, redeemed: 2, pending: 1, active: 1}, counts{issued: 1, redeemed: 1, pending: 1})

		can, err := h.partner.CancelEnrollment(pctx, &enrollv1.CancelEnrollmentRequest{Name: e1.GetName(), Reason: "member asked"})
		wantCode(t, "CancelEnrollment", err, codes.OK)
		wantCancelled := proto.Clone(wantActive).(*enrollv1.Enrollment)
		wantCancelled.State, wantCancelled.CancelTime = enrollv1.EnrollmentState_ENROLLMENT_STATE_CANCELLED, timestamppb.New(t0)
		if !proto.Equal(can.GetEnrollment(), wantCancelled) {
			t.Fatalf("CancelEnrollment: got %v, want %v", can.GetEnrollment(), wantCancelled)
		}
		_, err = h.partner.CancelEnrollment(pctx, &enrollv1.CancelEnrollmentRequest{Name: e1.GetName()})
		wantCode(t, "cancel twice", err, codes.FailedPrecondition, "CANCELLED")
		wantCounts(t, h, fctx, s.incident, counts{issued: 3, outstanding: 1, redeemed: 2, pending: 1, cancelled: 1}, counts{issued: 1, redeemed: 1, pending: 1})
	})
}

// counts is one cohort's expected counter values.
type counts struct {
	issued, outstanding, redeemed, expired, revoked int64
	pending, active, enExpired, cancelled, lapsed   int64
}

func (c counts) proto(cohort string) *enrollv1.CohortCounts {
	return &enrollv1.CohortCounts{
		Cohort: cohort,
		Codes:  &enrollv1.CodeCounts{Issued: c.issued, Outstanding: c.outstanding, Redeemed: c.redeemed, Expired: c.expired, Revoked: c.revoked},
		Enrollments: &enrollv1.EnrollmentCounts{
			Pending: c.pending, Active: c.active, Expired: c.enExpired, Cancelled: c.cancelled, Lapsed: c.lapsed,
		},
	}
}

// wantCounts checks GetCounts exactly: the credit-applicants and postpaid-customers cohorts
// and their sums (the prepaid cohort has no codes, so no counter rows).
func wantCounts(t testing.TB, h *harness, ctx context.Context, incident string, credit, postpaid counts) {
	t.Helper()
	got, err := h.reporting.GetCounts(ctx, &enrollv1.GetCountsRequest{Incident: incident})
	wantCode(t, "GetCounts", err, codes.OK)
	if want := expectedCounts(incident, h.clock.Now(), credit, postpaid); !proto.Equal(got, want) {
		t.Fatalf("GetCounts:\n got %v\nwant %v", got, want)
	}
}

func expectedCounts(incident string, now time.Time, credit, postpaid counts) *enrollv1.GetCountsResponse {
	sum := counts{
		issued: credit.issued + postpaid.issued, outstanding: credit.outstanding + postpaid.outstanding,
		redeemed: credit.redeemed + postpaid.redeemed, expired: credit.expired + postpaid.expired, revoked: credit.revoked + postpaid.revoked,
		pending: credit.pending + postpaid.pending, active: credit.active + postpaid.active, enExpired: credit.enExpired + postpaid.enExpired,
		cancelled: credit.cancelled + postpaid.cancelled, lapsed: credit.lapsed + postpaid.lapsed,
	}.proto("")
	return &enrollv1.GetCountsResponse{
		Incident: incident, Codes: sum.GetCodes(), Enrollments: sum.GetEnrollments(),
		Cohorts:  []*enrollv1.CohortCounts{credit.proto(incident + "/cohorts/credit-applicants"), postpaid.proto(incident + "/cohorts/postpaid-customers")},
		ReadTime: timestamppb.New(now),
	}
}

// Coverage ends after 24 calendar months at the same time of day, clamped to the month's
// last day: activated on 2024-02-29 it ends on 2026-02-28, and reads EXPIRED from then on.
func TestE2ECoverageEndClampsToMonthEnd(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, time.Date(2024, 2, 20, 10, 0, 0, 0, time.UTC))
		s := seed(t, h, "leap-breach", "leap-monitor")
		en := s.redeemRef(t, h, "APP-0002")
		activation := time.Date(2024, 2, 29, 10, 0, 0, 0, time.UTC)
		h.clock.Set(activation)
		act, err := h.partner.ActivateEnrollment(s.partnerCtx(t, h), &enrollv1.ActivateEnrollmentRequest{Name: en.GetName(), MemberId: "leap-1"})
		wantCode(t, "ActivateEnrollment", err, codes.OK)
		end := time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)
		if got := act.GetEnrollment(); !got.GetActivateTime().AsTime().Equal(activation) || !got.GetCoverageEndTime().AsTime().Equal(end) {
			t.Fatalf("activated %v, coverage end %v; want %v and %v", got.GetActivateTime().AsTime(), got.GetCoverageEndTime().AsTime(), activation, end)
		}
		for _, c := range []struct {
			at   time.Time
			want enrollv1.EnrollmentState
		}{
			{end.Add(-time.Second), enrollv1.EnrollmentState_ENROLLMENT_STATE_ACTIVE},
			{end, enrollv1.EnrollmentState_ENROLLMENT_STATE_EXPIRED},
		} {
			h.clock.Set(c.at)
			got, err := h.partner.GetEnrollment(s.partnerCtx(t, h), &enrollv1.GetEnrollmentRequest{Name: en.GetName()})
			wantCode(t, "GetEnrollment", err, codes.OK)
			if got.GetEnrollment().GetState() != c.want {
				t.Fatalf("at %v: state %v, want %v", c.at, got.GetEnrollment().GetState(), c.want)
			}
		}
	})
}
