package ctl_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/apiclient"
	"github.com/idprotect/enroll/internal/server/servertest"
	"github.com/idprotect/enroll/internal/store/gormstore"
)

// books is a world for finance tests: a server whose fake clock the test moves, partners
// with an incident and a client each, and enrollments made through the API at chosen
// instants. Every call takes a fresh token, since tokens expire on the fake clock.
type books struct {
	t        *testing.T
	s        *servertest.Server
	partners map[string][2]string // partner id → client id, secret
	codes    map[string]string    // external ref → plaintext code
	subjects int
}

func newBooks(t *testing.T, db gormstore.Config, start time.Time, partners ...string) *books {
	t.Helper()
	b := &books{t: t, s: servertest.Start(t, db, start), partners: map[string][2]string{}, codes: map[string]string{}}
	ctx, a := b.admin()
	for _, p := range partners {
		if _, err := a.CreatePartner(ctx, &enrollv1.CreatePartnerRequest{PartnerId: p, Partner: &enrollv1.Partner{
			DisplayName: p, EnrollmentUri: "https://" + p + ".example/enroll",
		}}); err != nil {
			t.Fatal(err)
		}
		// Long windows so codes issued once can be redeemed and activated years later.
		if _, err := a.CreateIncident(ctx, &enrollv1.CreateIncidentRequest{IncidentId: p + "-breach", Incident: &enrollv1.Incident{
			Title: p + " breach", Partner: "partners/" + p,
			Offer: &enrollv1.Offer{CoverageMonths: 24, RedeemWindowDays: 3650, ActivationWindowDays: 365},
		}}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.CreateCohort(ctx, &enrollv1.CreateCohortRequest{Parent: "incidents/" + p + "-breach", CohortId: "members", Cohort: &enrollv1.Cohort{
			DisplayName: "members", ExposedData: []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME}, OfferApplies: true,
		}}); err != nil {
			t.Fatal(err)
		}
		cl, err := a.CreateClient(ctx, &enrollv1.CreateClientRequest{Client: &enrollv1.Client{
			Role: enrollv1.Role_ROLE_PARTNER, Partner: "partners/" + p, DisplayName: p + " integration",
		}})
		if err != nil {
			t.Fatal(err)
		}
		b.partners[p] = [2]string{cl.GetClient().GetName()[len("clients/"):], cl.GetClientSecret()}
	}
	return b
}

func (b *books) token(id, secret string) context.Context {
	b.t.Helper()
	ctx := context.Background()
	tok, err := enrollv1.NewAuthServiceClient(b.s.Conn).Token(ctx, &enrollv1.TokenRequest{GrantType: "client_credentials", ClientId: id, ClientSecret: secret})
	if err != nil {
		b.t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.GetAccessToken())
}

func (b *books) admin() (context.Context, enrollv1.AdminServiceClient) {
	b.t.Helper()
	return b.token(b.s.AdminID, b.s.AdminSecret), enrollv1.NewAdminServiceClient(b.s.Conn)
}

func (b *books) reporting() (context.Context, enrollv1.ReportingServiceClient) {
	b.t.Helper()
	return b.token(b.s.AdminID, b.s.AdminSecret), enrollv1.NewReportingServiceClient(b.s.Conn)
}

func (b *books) partner(p string) (context.Context, enrollv1.PartnerServiceClient) {
	b.t.Helper()
	c := b.partners[p]
	return b.token(c[0], c[1]), enrollv1.NewPartnerServiceClient(b.s.Conn)
}

// issue imports one subject per ref into the partner's incident and issues them codes.
func (b *books) issue(p string, refs ...string) {
	b.t.Helper()
	ctx, a := b.admin()
	recs := make([]*enrollv1.SubjectRecord, len(refs))
	for i, ref := range refs {
		b.subjects++
		recs[i] = &enrollv1.SubjectRecord{ExternalRef: ref, Cohort: "members", LastName: "Tester", DateOfBirth: "1980-01-01",
			Ssn: fmt.Sprintf("123-45-%04d", b.subjects), PostalCode: "98101"}
	}
	imp, err := apiclient.Import(ctx, a, p+"-breach", 0, apiclient.Records(recs), nil)
	if err != nil || len(imp.GetErrors()) > 0 {
		b.t.Fatalf("import: %v %v", err, imp.GetErrors())
	}
	issued, err := a.IssueCodes(ctx, &enrollv1.IssueCodesRequest{Cohort: "incidents/" + p + "-breach/cohorts/members"})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, batch := range issued.GetBatches() {
		if _, err := apiclient.WaitBatch(ctx, a, batch.GetName(), 20*time.Millisecond, nil); err != nil {
			b.t.Fatal(err)
		}
		stream, err := a.ExportBatchCodes(ctx, &enrollv1.ExportBatchCodesRequest{Name: batch.GetName()})
		if err != nil {
			b.t.Fatal(err)
		}
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.t.Fatal(err)
			}
			for _, c := range chunk.GetCodes() {
				b.codes[c.GetExternalRef()] = c.GetCode()
			}
		}
	}
	for _, ref := range refs {
		if b.codes[ref] == "" {
			b.t.Fatalf("no code issued to %s", ref)
		}
	}
}

// redeem redeems ref's code at at and returns the enrollment's name.
func (b *books) redeem(ref string, at time.Time) string {
	b.t.Helper()
	b.s.Clock.Set(at)
	resp, err := enrollv1.NewRedemptionServiceClient(b.s.Conn).RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: b.codes[ref]})
	if err != nil {
		b.t.Fatalf("redeem %s: %v", ref, err)
	}
	return resp.GetEnrollment().GetName()
}

func (b *books) activate(p, enrollment, member string, at time.Time) {
	b.t.Helper()
	b.s.Clock.Set(at)
	ctx, c := b.partner(p)
	if _, err := c.ActivateEnrollment(ctx, &enrollv1.ActivateEnrollmentRequest{Name: enrollment, MemberId: member}); err != nil {
		b.t.Fatalf("activate %s: %v", enrollment, err)
	}
}

func (b *books) cancel(p, enrollment string, at time.Time) {
	b.t.Helper()
	b.s.Clock.Set(at)
	ctx, c := b.partner(p)
	if _, err := c.CancelEnrollment(ctx, &enrollv1.CancelEnrollmentRequest{Name: enrollment, Reason: "test"}); err != nil {
		b.t.Fatalf("cancel %s: %v", enrollment, err)
	}
}

// enroll redeems ref's code an hour before at and activates it at at as member.
func (b *books) enroll(p, ref, member string, at time.Time) string {
	b.t.Helper()
	e := b.redeem(ref, at.Add(-time.Hour))
	b.activate(p, e, member, at)
	return e
}

func date(y int, m time.Month, d, hh, mm, ss int) time.Time {
	return time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
}
