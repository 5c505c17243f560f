package server_test

import (
	"context"
	"errors"
	"github.com/idprotect/enroll/internal/apiclient"
	"io"
	"strings"
	"testing"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
)

// firstLine is the source line of the first fixture row (line 1 is the CSV header).
const firstLine = 2

// fixtureSubjects is the eligibility file every seeded incident imports. APP-0003 and
// PP-1003 are one person (same identity tuple, written differently) in two cohorts; the last
// row has no last name and must be rejected by line number.
func fixtureSubjects() []*enrollv1.SubjectRecord {
	return []*enrollv1.SubjectRecord{
		{ExternalRef: "APP-0001", Cohort: "credit-applicants", LastName: "Rivera", DateOfBirth: "1984-03-12", Ssn: "521-73-9101", PostalCode: "98101"},
		{ExternalRef: "APP-0002", Cohort: "credit-applicants", LastName: "Chen", DateOfBirth: "1990-07-01", Ssn: "521-73-9102", PostalCode: "10001"},
		{ExternalRef: "APP-0003", Cohort: "credit-applicants", LastName: "O'Kafor", DateOfBirth: "1975-11-23", Ssn: "521-73-9103", PostalCode: "60601"},
		{ExternalRef: "PP-1003", Cohort: "postpaid-customers", LastName: "OKAFOR", DateOfBirth: "1975-11-23", Ssn: "9103", PostalCode: "60601-1234"},
		{ExternalRef: "PP-1001", Cohort: "postpaid-customers", LastName: "Novak", DateOfBirth: "1968-02-29", Ssn: "521-73-9104", PostalCode: "30301"},
		{ExternalRef: "PRE-2001", Cohort: "prepaid-customers", LastName: "Smith", Phone: "+1 206 555 0101"},
		{ExternalRef: "BAD-0001", Cohort: "credit-applicants", LastName: "", DateOfBirth: "1999-01-01", Ssn: "521-73-9105", PostalCode: "10001"},
	}
}

// badLine is the source line of the rejected fixture row.
const badLine = firstLine + 6

// fixtureSSNs are the SSNs of the fixture, in the forms that must never be stored or logged.
var fixtureSSNs = []string{
	"521-73-9101", "521739101", "521-73-9102", "521739102", "521-73-9103", "521739103",
	"521-73-9104", "521739104", "521-73-9105", "521739105",
}

type cohortFixture struct {
	id string
	c  *enrollv1.Cohort
}

func fixtureCohorts() []cohortFixture {
	return []cohortFixture{
		{"credit-applicants", &enrollv1.Cohort{
			DisplayName:        "Credit applicants",
			ExposedData:        []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME, enrollv1.ExposedData_EXPOSED_DATA_SSN, enrollv1.ExposedData_EXPOSED_DATA_DRIVERS_LICENSE},
			RecommendedActions: []string{"Freeze your credit.", "Enroll in identity protection."},
			OfferApplies:       true,
		}},
		{"postpaid-customers", &enrollv1.Cohort{
			DisplayName:        "Postpaid customers",
			ExposedData:        []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME, enrollv1.ExposedData_EXPOSED_DATA_SSN},
			RecommendedActions: []string{"Change your account PIN.", "Enroll in identity protection."},
			OfferApplies:       true,
		}},
		{"prepaid-customers", &enrollv1.Cohort{
			DisplayName:        "Prepaid customers",
			ExposedData:        []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME, enrollv1.ExposedData_EXPOSED_DATA_PHONE_NUMBER, enrollv1.ExposedData_EXPOSED_DATA_ACCOUNT_PIN},
			RecommendedActions: []string{"Change your account PIN."},
			OfferApplies:       false,
		}},
	}
}

// seeded is what seed made.
type seeded struct {
	incidentID, partnerID string
	// incident and partner are resource names.
	incident, partner string
	title             string
	// The partner's API client.
	partnerClient, partnerSecret string
	imported                     *enrollv1.ImportSubjectsResponse
	// batches and exported are keyed by cohort id (offered cohorts only).
	batches  map[string]*enrollv1.Batch
	exported map[string][]*enrollv1.ExportedCode
	// codes maps external_ref to the display-form code mailed to that subject.
	codes map[string]string
}

// seed does what an operator does through the gRPC API: a partner with a partner client, an
// incident served by it, the three fixture cohorts, the fixture import, a batch per offered
// cohort and its mail-house export.
func seed(t testing.TB, h *harness, incidentID, partnerID string) *seeded {
	t.Helper()
	ctx := h.adminCtx(t)
	s := &seeded{
		incidentID: incidentID, partnerID: partnerID, incident: "incidents/" + incidentID, partner: "partners/" + partnerID,
		title: "Breach " + incidentID, batches: map[string]*enrollv1.Batch{}, exported: map[string][]*enrollv1.ExportedCode{},
		codes: map[string]string{},
	}
	_, err := h.admin.CreatePartner(ctx, &enrollv1.CreatePartnerRequest{PartnerId: partnerID, Partner: &enrollv1.Partner{
		DisplayName: "Monitor " + partnerID, EnrollmentUri: "https://" + partnerID + ".example/enroll",
	}})
	if err != nil {
		t.Fatalf("CreatePartner: %v", err)
	}
	pc, err := h.admin.CreateClient(ctx, &enrollv1.CreateClientRequest{Client: &enrollv1.Client{
		Role: enrollv1.Role_ROLE_PARTNER, Partner: s.partner, DisplayName: partnerID + " integration",
	}})
	if err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	s.partnerClient, s.partnerSecret = strings.TrimPrefix(pc.GetClient().GetName(), "clients/"), pc.GetClientSecret()
	if _, err := h.admin.CreateIncident(ctx, &enrollv1.CreateIncidentRequest{IncidentId: incidentID, Incident: &enrollv1.Incident{
		Title: s.title, Partner: s.partner,
	}}); err != nil {
		t.Fatalf("CreateIncident: %v", err)
	}
	for _, c := range fixtureCohorts() {
		if _, err := h.admin.CreateCohort(ctx, &enrollv1.CreateCohortRequest{Parent: s.incident, CohortId: c.id, Cohort: c.c}); err != nil {
			t.Fatalf("CreateCohort %s: %v", c.id, err)
		}
	}
	s.imported = h.importSubjects(t, ctx, s.incident, fixtureSubjects())
	for _, c := range fixtureCohorts() {
		if !c.c.GetOfferApplies() {
			continue
		}
		b := h.issue(t, ctx, s.incident+"/cohorts/"+c.id)
		s.batches[c.id] = b
		rows := exportCodes(t, h, ctx, b.GetName())
		s.exported[c.id] = rows
		for _, r := range rows {
			s.codes[r.GetExternalRef()] = r.GetCode()
		}
	}
	return s
}

// exportCodes reads a batch's whole mail-house stream.
func exportCodes(t testing.TB, h *harness, ctx context.Context, batch string) []*enrollv1.ExportedCode {
	t.Helper()
	stream, err := h.admin.ExportBatchCodes(ctx, &enrollv1.ExportBatchCodesRequest{Name: batch})
	if err != nil {
		t.Fatalf("ExportBatchCodes %s: %v", batch, err)
	}
	var out []*enrollv1.ExportedCode
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("ExportBatchCodes %s: %v", batch, err)
		}
		out = append(out, chunk.GetCodes()...)
	}
}

// partnerCtx is a context with the seeded partner's token.
func (s *seeded) partnerCtx(t testing.TB, h *harness) context.Context {
	t.Helper()
	return bearer(s.partnerToken(t, h))
}

func (s *seeded) partnerToken(t testing.TB, h *harness) string {
	t.Helper()
	return h.token(t, s.partnerClient, s.partnerSecret)
}

// redeemRef redeems the code of a seeded subject and returns the PENDING enrollment.
func (s *seeded) redeemRef(t testing.TB, h *harness, ref string) *enrollv1.Enrollment {
	t.Helper()
	code, ok := s.codes[ref]
	if !ok {
		t.Fatalf("no code was issued to %s", ref)
	}
	resp, err := h.redeem.RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: code})
	if err != nil {
		t.Fatalf("RedeemCode %s: %v", ref, err)
	}
	if got := resp.GetEnrollment().GetState(); got != enrollv1.EnrollmentState_ENROLLMENT_STATE_PENDING {
		t.Fatalf("RedeemCode %s: state %v, want PENDING", ref, got)
	}
	return resp.GetEnrollment()
}

// importSubjects streams rows (numbered from firstLine, as in a CSV with a header) through
// ImportSubjects in one message and returns the summary.
func (h *harness) importSubjects(t testing.TB, ctx context.Context, incident string, rows []*enrollv1.SubjectRecord) *enrollv1.ImportSubjectsResponse {
	t.Helper()
	for i, r := range rows {
		if r.GetLine() == 0 {
			r.Line = int64(firstLine + i)
		}
	}
	resp, err := apiclient.Import(ctx, h.admin, strings.TrimPrefix(incident, "incidents/"), 0, apiclient.Records(rows), nil)
	if err != nil {
		t.Fatalf("ImportSubjects: %v", err)
	}
	return resp
}

// issue starts issuance for one cohort and waits until the background batch has finished.
func (h *harness) issue(t testing.TB, ctx context.Context, cohort string) *enrollv1.Batch {
	t.Helper()
	resp, err := h.admin.IssueCodes(ctx, &enrollv1.IssueCodesRequest{Cohort: cohort})
	if err != nil {
		t.Fatalf("IssueCodes %s: %v", cohort, err)
	}
	if len(resp.GetBatches()) != 1 || resp.GetBatches()[0].GetState() != enrollv1.BatchState_BATCH_STATE_RUNNING {
		t.Fatalf("IssueCodes %s: want one RUNNING batch, got %v", cohort, resp)
	}
	b, err := apiclient.WaitBatch(ctx, h.admin, resp.GetBatches()[0].GetName(), 10*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("batch of %s: %v", cohort, err)
	}
	return b
}
