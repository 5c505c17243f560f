package ctl_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
)

// The parts of TestReconcile that talk to the API directly: every reason, the caps, the
// refusals and the REST binding.

// everyReason sends an invoice with one line per reason through the API, listing at most 2.
func (w *invoiceWorld) everyReason(t *testing.T) {
	ctx, r := w.reporting()
	stream, err := r.ReconcileInvoice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := func(line int64, v string) *enrollv1.InvoiceLine {
		return &enrollv1.InvoiceLine{Line: line, Value: &enrollv1.InvoiceLine_MemberId{MemberId: v}}
	}
	e := func(line int64, v string) *enrollv1.InvoiceLine {
		return &enrollv1.InvoiceLine{Line: line, Value: &enrollv1.InvoiceLine_Enrollment{Enrollment: v}}
	}
	msgs := []*enrollv1.ReconcileInvoiceRequest{
		{Partner: "partners/alpha", Month: "2026-10", MaxDifferences: 2, Lines: []*enrollv1.InvoiceLine{m(1, member(1)), e(3, w.pending)}},
		{Lines: []*enrollv1.InvoiceLine{m(4, "M-LATE"), m(5, member(3))}},
		{Partner: "partners/alpha", Lines: []*enrollv1.InvoiceLine{e(9, w.beta), m(10, "NOBODY"), e(11, w.members[1])}},
	}
	for _, msg := range msgs {
		if err := stream.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	tot := resp.GetTotals()
	if tot.GetInvoiceLines() != 7 || tot.GetMatched() != 1 || tot.GetBilledNotBillable() != 6 || tot.GetBillable() != 29 || tot.GetBillableNotBilled() != 28 {
		t.Fatalf("totals %v", tot)
	}
	byReason := map[string]int64{}
	for _, c := range tot.GetByReason() {
		byReason[c.GetReason().String()] = c.GetLines()
	}
	want := map[string]int64{}
	for _, r := range []string{"NEVER_ACTIVATED", "NOT_STARTED", "ENDED_BEFORE_MONTH", "OTHER_PARTNER", "UNKNOWN", "DUPLICATE"} {
		want["NOT_BILLABLE_REASON_"+r] = 1
	}
	if !maps.Equal(byReason, want) {
		t.Fatalf("by reason %v, want %v", byReason, want)
	}
	got := resp.GetBilledNotBillable()
	if len(got) != 2 || len(resp.GetBillableNotBilled()) != 2 {
		t.Fatalf("listed %d and %d, want 2 and 2", len(got), len(resp.GetBillableNotBilled()))
	}
	if got[0].GetLine() != 3 || got[0].GetReason() != enrollv1.NotBillableReason_NOT_BILLABLE_REASON_NEVER_ACTIVATED || got[0].GetEnrollment() != w.pending ||
		got[1].GetLine() != 4 || got[1].GetReason() != enrollv1.NotBillableReason_NOT_BILLABLE_REASON_NOT_STARTED || got[1].GetEnrollment() != w.late {
		t.Fatalf("first two listed: %v", got)
	}

	// The same invoice uncapped: the duplicate names its first line.
	stream, err = r.ReconcileInvoice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs[0].MaxDifferences = 0
	for _, msg := range msgs {
		if err := stream.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	resp, err = stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if l := resp.GetBilledNotBillable(); len(l) != 6 || l[5].GetLine() != 11 || l[5].GetFirstLine() != 1 || l[5].GetEnrollment() != w.members[1] {
		t.Fatalf("uncapped: %v", l)
	}
	if len(resp.GetBillableNotBilled()) != 28 {
		t.Fatalf("uncapped: %d billable not billed, want 28", len(resp.GetBillableNotBilled()))
	}
}

func (w *invoiceWorld) refusals(t *testing.T) {
	line := func(n int64, v string) *enrollv1.InvoiceLine {
		return &enrollv1.InvoiceLine{Line: n, Value: &enrollv1.InvoiceLine_MemberId{MemberId: v}}
	}
	tests := []struct {
		name string
		msgs []*enrollv1.ReconcileInvoiceRequest
		code codes.Code
		want string
	}{
		{"no message", nil, codes.InvalidArgument, "partner"},
		{"bad month", []*enrollv1.ReconcileInvoiceRequest{{Partner: "partners/alpha", Month: "October"}}, codes.InvalidArgument, "YYYY-MM"},
		{"unknown partner", []*enrollv1.ReconcileInvoiceRequest{{Partner: "partners/gamma", Month: "2026-10"}}, codes.NotFound, "gamma"},
		{"line numbers go back", []*enrollv1.ReconcileInvoiceRequest{
			{Partner: "partners/alpha", Month: "2026-10", Lines: []*enrollv1.InvoiceLine{line(5, "a")}},
			{Lines: []*enrollv1.InvoiceLine{line(5, "b")}},
		}, codes.InvalidArgument, "line 5"},
		{"empty value", []*enrollv1.ReconcileInvoiceRequest{{Partner: "partners/alpha", Month: "2026-10", Lines: []*enrollv1.InvoiceLine{{Line: 1}}}}, codes.InvalidArgument, "line 1"},
		{"value too long", []*enrollv1.ReconcileInvoiceRequest{{Partner: "partners/alpha", Month: "2026-10",
			Lines: []*enrollv1.InvoiceLine{line(1, "M-1"), line(2, strings.Repeat("x", 129))}}}, codes.InvalidArgument, "line 2"},
		{"month changed", []*enrollv1.ReconcileInvoiceRequest{
			{Partner: "partners/alpha", Month: "2026-10"}, {Month: "2026-11"},
		}, codes.InvalidArgument, "first message"},
	}
	for _, tc := range tests {
		ctx, r := w.reporting()
		stream, err := r.ReconcileInvoice(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tc.msgs {
			if err := stream.Send(m); err != nil {
				break // the server answered already
			}
		}
		_, err = stream.CloseAndRecv()
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v mentioning %q", tc.name, err, tc.code, tc.want)
		}
	}
	// A partner client is not finance.
	ctx, _ := w.partner("alpha")
	stream, err := enrollv1.NewReportingServiceClient(w.s.Conn).ReconcileInvoice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&enrollv1.ReconcileInvoiceRequest{Partner: "partners/alpha", Month: "2026-10"})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.PermissionDenied {
		t.Errorf("partner client: %v, want PermissionDenied", err)
	}
}

// rest posts an invoice to the gateway as a stream of JSON messages.
func (w *invoiceWorld) rest(t *testing.T) {
	_, a := w.admin()
	ctx, _ := w.admin()
	fin, err := a.CreateClient(ctx, &enrollv1.CreateClientRequest{Client: &enrollv1.Client{Role: enrollv1.Role_ROLE_FINANCE, DisplayName: "finance"}})
	if err != nil {
		t.Fatal(err)
	}
	tokBody := fmt.Sprintf(`{"grant_type":"client_credentials","client_id":%q,"client_secret":%q}`, strings.TrimPrefix(fin.GetClient().GetName(), "clients/"), fin.GetClientSecret())
	resp, err := http.Post(w.s.HTTPBase+"/v1/token", "application/json", strings.NewReader(tokBody))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %v", err)
	}
	resp.Body.Close()
	body := `{"partner":"partners/alpha","month":"2026-10","lines":[{"line":1,"member_id":"M-0001"},{"line":2,"member_id":"M-0001"}]}
{"lines":[{"line":3,"enrollment":"` + w.members[2] + `"}]}`
	req, _ := http.NewRequest(http.MethodPost, w.s.HTTPBase+"/v1/billing:reconcile", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/billing:reconcile: %s %s", resp.Status, raw)
	}
	var got struct {
		Totals struct {
			InvoiceLines      string `json:"invoice_lines"`
			Matched           string `json:"matched"`
			BilledNotBillable string `json:"billed_not_billable"`
		} `json:"totals"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if got.Totals.InvoiceLines != "3" || got.Totals.Matched != "2" || got.Totals.BilledNotBillable != "1" {
		t.Fatalf("REST totals %+v: %s", got.Totals, raw)
	}
}
