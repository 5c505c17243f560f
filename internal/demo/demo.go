// Package demo seeds a running server with a demo incident over its own gRPC API, exactly as
// an operator would: partner, incident, the three cohorts of the product spec, a few subjects,
// codes for the cohorts that are offered protection, and partner and finance clients. It
// prints the codes and credentials once, with a copy-paste walkthrough.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/apiclient"
)

// IncidentID is the demo incident.
const IncidentID = "demo-breach"

// Result is what seeding produced.
type Result struct {
	Codes         []Code
	Batches       []string // batches/{id}, one per cohort offered protection
	PartnerID     string
	PartnerSecret string
	FinanceID     string
	FinanceSecret string
	AlreadySeeded bool
}

// Code is one issued demo code.
type Code struct {
	ExternalRef, Cohort, Code string
}

var subjects = []*enrollv1.SubjectRecord{
	{ExternalRef: "APP-0001", Cohort: "credit-applicants", LastName: "Rivera", DateOfBirth: "1984-03-12", Ssn: "123-45-6001", PostalCode: "98101"},
	{ExternalRef: "APP-0002", Cohort: "credit-applicants", LastName: "Chen", DateOfBirth: "1990-07-01", Ssn: "123-45-6002", PostalCode: "10001"},
	{ExternalRef: "APP-0003", Cohort: "credit-applicants", LastName: "Okafor", DateOfBirth: "1975-11-23", Ssn: "123-45-6003", PostalCode: "60601"},
	// The same person as APP-0003, also a postpaid customer: one subject, one code.
	{ExternalRef: "PP-1003", Cohort: "postpaid-customers", LastName: "OKAFOR", DateOfBirth: "1975-11-23", Ssn: "6003", PostalCode: "60601"},
	{ExternalRef: "PP-1001", Cohort: "postpaid-customers", LastName: "Novak", DateOfBirth: "1968-02-29", Ssn: "123-45-6004", PostalCode: "30301"},
	{ExternalRef: "PP-1002", Cohort: "postpaid-customers", LastName: "García", DateOfBirth: "2001-05-05", Ssn: "123-45-6005", PostalCode: "73301"},
	{ExternalRef: "PRE-2001", Cohort: "prepaid-customers", LastName: "Smith", Phone: "+1 206 555 0101"},
	{ExternalRef: "PRE-2002", Cohort: "prepaid-customers", LastName: "Jones", Phone: "+1 206 555 0102"},
}

var cohorts = []struct {
	id string
	c  *enrollv1.Cohort
}{
	{"credit-applicants", &enrollv1.Cohort{
		DisplayName:        "Credit applicants (current, former and prospective)",
		ExposedData:        []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME, enrollv1.ExposedData_EXPOSED_DATA_SSN, enrollv1.ExposedData_EXPOSED_DATA_DRIVERS_LICENSE},
		RecommendedActions: []string{"Place a free credit freeze with Equifax, Experian and TransUnion.", "Enroll in the free identity protection offered here."},
		OfferApplies:       true,
	}},
	{"postpaid-customers", &enrollv1.Cohort{
		DisplayName:        "Postpaid customers",
		ExposedData:        []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME, enrollv1.ExposedData_EXPOSED_DATA_SSN, enrollv1.ExposedData_EXPOSED_DATA_DRIVERS_LICENSE},
		RecommendedActions: []string{"Change your account PIN.", "Enroll in the free identity protection offered here."},
		OfferApplies:       true,
	}},
	{"prepaid-customers", &enrollv1.Cohort{
		DisplayName:        "Prepaid customers",
		ExposedData:        []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME, enrollv1.ExposedData_EXPOSED_DATA_PHONE_NUMBER, enrollv1.ExposedData_EXPOSED_DATA_ACCOUNT_PIN},
		RecommendedActions: []string{"Change your account PIN."},
		OfferApplies:       false,
	}},
}

// Seed creates the demo data unless the demo incident exists already.
func Seed(ctx context.Context, conn *grpc.ClientConn, adminID, adminSecret string) (*Result, error) {
	tok, err := enrollv1.NewAuthServiceClient(conn).Token(ctx, &enrollv1.TokenRequest{
		GrantType: "client_credentials", ClientId: adminID, ClientSecret: adminSecret,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to get an admin token: %w", err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.GetAccessToken())
	admin := enrollv1.NewAdminServiceClient(conn)
	_, err = admin.GetIncident(ctx, &enrollv1.GetIncidentRequest{Name: "incidents/" + IncidentID})
	if err == nil {
		return &Result{AlreadySeeded: true}, nil
	}
	if status.Code(err) != codes.NotFound {
		return nil, fmt.Errorf("failed to look for the demo incident: %w", err)
	}
	if _, err := admin.CreatePartner(ctx, &enrollv1.CreatePartnerRequest{PartnerId: "demo-monitor", Partner: &enrollv1.Partner{
		DisplayName: "Demo Monitoring Co.", EnrollmentUri: "https://partner.example/enroll",
	}}); err != nil && status.Code(err) != codes.AlreadyExists {
		return nil, fmt.Errorf("failed to create the demo partner: %w", err)
	}
	if _, err := admin.CreateIncident(ctx, &enrollv1.CreateIncidentRequest{IncidentId: IncidentID, Incident: &enrollv1.Incident{
		Title: "2026 customer data breach (demo)", Partner: "partners/demo-monitor",
	}}); err != nil {
		return nil, fmt.Errorf("failed to create the demo incident: %w", err)
	}
	for _, c := range cohorts {
		if _, err := admin.CreateCohort(ctx, &enrollv1.CreateCohortRequest{Parent: "incidents/" + IncidentID, CohortId: c.id, Cohort: c.c}); err != nil {
			return nil, fmt.Errorf("failed to create cohort %s: %w", c.id, err)
		}
	}
	imp, err := apiclient.Import(ctx, admin, IncidentID, 0, apiclient.Records(subjects), nil)
	if err != nil {
		return nil, fmt.Errorf("failed to import demo subjects: %w", err)
	}
	if len(imp.GetErrors()) > 0 {
		return nil, fmt.Errorf("demo import rejected line %d: %s", imp.GetErrors()[0].GetLine(), imp.GetErrors()[0].GetReason())
	}
	res := &Result{}
	issued, err := admin.IssueCodes(ctx, &enrollv1.IssueCodesRequest{Incident: "incidents/" + IncidentID})
	if err != nil {
		return nil, fmt.Errorf("failed to issue codes: %w", err)
	}
	for _, b := range issued.GetBatches() {
		if _, err := apiclient.WaitBatch(ctx, admin, b.GetName(), 50*time.Millisecond, nil); err != nil {
			return nil, err
		}
		res.Batches = append(res.Batches, b.GetName())
		stream, err := admin.ExportBatchCodes(ctx, &enrollv1.ExportBatchCodesRequest{Name: b.GetName()})
		if err != nil {
			return nil, fmt.Errorf("failed to export %s: %w", b.GetName(), err)
		}
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("failed to export %s: %w", b.GetName(), err)
			}
			for _, r := range chunk.GetCodes() {
				res.Codes = append(res.Codes, Code{ExternalRef: r.GetExternalRef(), Cohort: r.GetCohort(), Code: r.GetCode()})
			}
		}
	}
	pc, err := admin.CreateClient(ctx, &enrollv1.CreateClientRequest{Client: &enrollv1.Client{
		Role: enrollv1.Role_ROLE_PARTNER, Partner: "partners/demo-monitor", DisplayName: "demo partner integration",
	}})
	if err != nil {
		return nil, fmt.Errorf("failed to create the demo partner client: %w", err)
	}
	fc, err := admin.CreateClient(ctx, &enrollv1.CreateClientRequest{Client: &enrollv1.Client{Role: enrollv1.Role_ROLE_FINANCE, DisplayName: "demo finance"}})
	if err != nil {
		return nil, fmt.Errorf("failed to create the demo finance client: %w", err)
	}
	res.PartnerID, res.PartnerSecret = strings.TrimPrefix(pc.GetClient().GetName(), "clients/"), pc.GetClientSecret()
	res.FinanceID, res.FinanceSecret = strings.TrimPrefix(fc.GetClient().GetName(), "clients/"), fc.GetClientSecret()
	return res, nil
}

// Print writes the one-time demo sheet: codes, credentials and a curl walkthrough against
// the REST gateway at httpBase.
func Print(w io.Writer, r *Result, httpBase string) {
	if r.AlreadySeeded {
		fmt.Fprintf(w, "\nDemo incident %q already exists; its codes and client secrets were printed when it was created.\n"+
			"To start over: stop the server, delete enroll-demo.db* and enroll-dev-keys.json, run it again.\n\n", IncidentID)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n================ DEMO DATA (shown once, development secrets) ================\n")
	fmt.Fprintf(&b, "Codes mailed to the demo subjects (the prepaid cohort is not offered protection):\n")
	for _, c := range r.Codes {
		fmt.Fprintf(&b, "  %-9s %-19s %s\n", c.ExternalRef, c.Cohort, c.Code)
	}
	fmt.Fprintf(&b, "Partner client: %s  secret: %s\n", r.PartnerID, r.PartnerSecret)
	fmt.Fprintf(&b, "Finance client: %s  secret: %s\n", r.FinanceID, r.FinanceSecret)
	code := ""
	if len(r.Codes) > 0 {
		code = r.Codes[0].Code
	}
	fmt.Fprintf(&b, "\nRedeem a code as an affected person would: open %s/ in a browser.\n", httpBase)
	fmt.Fprintf(&b, "\nWalkthrough (copy-paste into another terminal):\n\n")
	fmt.Fprintf(&b, "export API=%s CODE=%s\n", httpBase, code)
	fmt.Fprintf(&b, "export PARTNER_ID=%s PARTNER_SECRET=%s\n", r.PartnerID, r.PartnerSecret)
	fmt.Fprintf(&b, "export FINANCE_ID=%s FINANCE_SECRET=%s\n", r.FinanceID, r.FinanceSecret)
	b.WriteString(Walkthrough)
	b.WriteString("==============================================================================\n\n")
	_, _ = io.WriteString(w, b.String())
}

// Walkthrough is the curl session of the README, using the variables Print exports.
const Walkthrough = `
# 1. What does the code give? (lower case and missing hyphens are fine)
curl -s -X POST $API/v1/redemption:check -d "{\"code\":\"$CODE\"}"
# 2. Redeem it: a PENDING enrollment and the partner's next-step link
ENROLLMENT=$(curl -s -X POST $API/v1/redemption:redeem -d "{\"code\":\"$CODE\"}" | sed -E 's/.*"name":"(enrollments\/[a-z0-9]+)".*/\1/')
echo $ENROLLMENT
# 3. The partner gets a token with its client credentials
PTOKEN=$(curl -s -X POST $API/v1/token -d "{\"grant_type\":\"client_credentials\",\"client_id\":\"$PARTNER_ID\",\"client_secret\":\"$PARTNER_SECRET\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
# 4. ... and activates the enrollment, binding its member id: coverage starts now
curl -s -X POST $API/v1/$ENROLLMENT:activate -H "Authorization: Bearer $PTOKEN" -d '{"member_id":"M-1001"}'
# 5. The person checks the status with their code
curl -s -X POST $API/v1/redemption:status -d "{\"code\":\"$CODE\"}"
# 6. Finance reads the counts
FTOKEN=$(curl -s -X POST $API/v1/token -d "{\"grant_type\":\"client_credentials\",\"client_id\":\"$FINANCE_ID\",\"client_secret\":\"$FINANCE_SECRET\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -s $API/v1/incidents/demo-breach/counts -H "Authorization: Bearer $FTOKEN"
`
