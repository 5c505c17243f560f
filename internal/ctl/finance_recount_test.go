package ctl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/audit"
	"github.com/idprotect/enroll/internal/demo"
	"github.com/idprotect/enroll/internal/server/servertest"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// diffLines returns the indented difference lines of recount or repair-counters output.
func diffLines(out string) []string {
	var d []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  ") {
			d = append(d, strings.TrimSpace(l))
		}
	}
	return d
}

// TestRecountRepair checks the counters after normal operations, corrupts one counter row in
// the SQLite file behind the server's back, and has recount find exactly that and
// repair-counters fix it, on the audit record.
func TestRecountRepair(t *testing.T) {
	t.Parallel()
	db := gormtest.SQLite(t)
	s := servertest.Start(t, db, time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	ctx := context.Background()
	seeded, err := demo.Seed(ctx, s.Conn, s.AdminID, s.AdminSecret)
	if err != nil {
		t.Fatal(err)
	}
	// Enrollment counters too: redeem two codes, and cancel one of them.
	red := enrollv1.NewRedemptionServiceClient(s.Conn)
	for i, c := range seeded.Codes[:2] {
		if _, err := red.RedeemCode(ctx, &enrollv1.RedeemCodeRequest{Code: c.Code}); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if _, err := red.CancelOwnEnrollment(ctx, &enrollv1.CancelOwnEnrollmentRequest{Code: c.Code}); err != nil {
				t.Fatal(err)
			}
		}
	}

	out, stderr, err := run(t, s, "recount", "--incident", demo.IncidentID)
	if err != nil || !strings.Contains(out, "differences: 0\n") || countLine(t, out, "counters checked") == 0 {
		t.Fatalf("recount after normal operations: %v\n%s%s", err, out, stderr)
	}

	// Corrupt one counter row directly in the database file.
	st, err := gormstore.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var row struct {
		CohortID, Kind, State string
		N                     int64
	}
	if err := st.DB().Raw("SELECT cohort_id, kind, state, n FROM counters WHERE incident_id = ? AND kind = 'code' ORDER BY cohort_id, state LIMIT 1",
		demo.IncidentID).Scan(&row).Error; err != nil || row.CohortID == "" {
		t.Fatalf("no counter row to corrupt: %v", err)
	}
	res := st.DB().Exec("UPDATE counters SET n = n + 7 WHERE incident_id = ? AND cohort_id = ? AND kind = ? AND state = ?", demo.IncidentID, row.CohortID, row.Kind, row.State)
	if res.Error != nil || res.RowsAffected != 1 {
		t.Fatalf("corrupt: %v (%d rows)", res.Error, res.RowsAffected)
	}
	_ = st.Close()
	want := fmt.Sprintf("%s %s %s: counter %d, actual %d", row.CohortID, row.Kind, row.State, row.N+7, row.N)

	out, _, err = run(t, s, "recount", "--incident", demo.IncidentID)
	if err == nil || !strings.Contains(err.Error(), "1 counter(s)") || !strings.Contains(out, "differences: 1\n") {
		t.Fatalf("recount after corruption: err = %v\n%s", err, out)
	}
	if d := diffLines(out); len(d) != 1 || d[0] != want {
		t.Fatalf("recount reports %q, want exactly %q", d, want)
	}

	out, stderr, err = run(t, s, "repair-counters", "--incident", demo.IncidentID)
	if err != nil || !strings.Contains(out, "repaired: 1\n") {
		t.Fatalf("repair-counters: %v\n%s%s", err, out, stderr)
	}
	if d := diffLines(out); len(d) != 1 || d[0] != want {
		t.Fatalf("repair-counters reports %q, want exactly %q", d, want)
	}
	out, _, err = run(t, s, "recount", "--incident", demo.IncidentID)
	if err != nil || !strings.Contains(out, "differences: 0\n") {
		t.Fatalf("recount after repair: %v\n%s", err, out)
	}

	path, lines := exportAudit(t, s)
	var repairs []audit.Entry
	for _, l := range lines {
		var e audit.Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		if e.Action == enrollv1.ReportingService_RepairCounters_FullMethodName {
			repairs = append(repairs, e)
		}
	}
	if len(repairs) != 1 || repairs[0].Resource != "incidents/"+demo.IncidentID || repairs[0].Outcome != "OK" || repairs[0].Actor != "clients/"+s.AdminID {
		t.Fatalf("repair in the audit export: %+v", repairs)
	}
	if out, err := verifyOffline(t, path); err != nil {
		t.Fatalf("audit verify after the repair: %v\n%s", err, out)
	}
}
