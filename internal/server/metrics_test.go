package server

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/idprotect/enroll/internal/enrollment"
)

// A batch in progress has issued/total gauges labelled by batch and incident only; they go
// when the runner lets the batch go, and the issued counter keeps the chunks.
func TestBatchProgressGauges(t *testing.T) {
	m := NewMetrics()
	p := m.Progress()
	b := &enrollment.Batch{ID: "b-1", IncidentID: "inc-1", CohortID: "cohort-x", Total: 100, Issued: 40, LeaseOwner: "host/1/abc"}
	p.Issued(b, 40, 0)
	p.Issued(b, 65, 25)
	want := `
# HELP enroll_batch_codes_issued Codes issued so far in each batch this replica is issuing.
# TYPE enroll_batch_codes_issued gauge
enroll_batch_codes_issued{batch_id="b-1",incident_id="inc-1"} 65
# HELP enroll_batch_codes_total Codes each batch this replica is issuing will have when done.
# TYPE enroll_batch_codes_total gauge
enroll_batch_codes_total{batch_id="b-1",incident_id="inc-1"} 100
# HELP enroll_issuance_codes_issued_total Codes issued by this replica.
# TYPE enroll_issuance_codes_issued_total counter
enroll_issuance_codes_issued_total 25
`
	names := []string{"enroll_batch_codes_issued", "enroll_batch_codes_total", "enroll_issuance_codes_issued_total"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	p.Stopped(b)
	want = `
# HELP enroll_issuance_codes_issued_total Codes issued by this replica.
# TYPE enroll_issuance_codes_issued_total counter
enroll_issuance_codes_issued_total 25
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Fatalf("after Stopped: %v", err)
	}
}

// Two servers in one process have separate registries: registering the same collectors
// twice would panic on a shared one.
func TestMetricsRegistriesAreSeparate(t *testing.T) {
	a, b := NewMetrics(), NewMetrics()
	a.LimitRejected("partner_calls")
	if got := testutil.ToFloat64(b.rejections.WithLabelValues("partner_calls")); got != 0 {
		t.Fatalf("a rejection on one server shows on another: %v", got)
	}
}
