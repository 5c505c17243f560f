package main

// Checks that read the database directly, bypassing the API: the finance counters against a
// full recount, and the code rows of a batch.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store/gormstore"
)

// checkCounters fails t unless the counter rows of incidentID (what finance reads) equal a
// full recount from the rows they count, exactly.
func checkCounters(t testing.TB, st *gormstore.Store, incidentID, when string) {
	t.Helper()
	ctx := context.Background()
	counters, err := st.Counters(ctx, incidentID)
	if err != nil {
		t.Fatalf("%s: Counters: %v", when, err)
	}
	recount, err := st.Recount(ctx, incidentID)
	if err != nil {
		t.Fatalf("%s: Recount: %v", when, err)
	}
	if len(recount) == 0 || !slices.Equal(counters, recount) {
		t.Fatalf("%s: counters differ from a full recount\ncounters: %s\nrecount:  %s", when, renderCounts(counters), renderCounts(recount))
	}
}

// counts reads the incident's counts through the finance API (the counter rows).
func (d *daemon) counts(incidentID string) *enrollv1.GetCountsResponse {
	d.t.Helper()
	resp, err := d.reporting.GetCounts(d.ctx(), &enrollv1.GetCountsRequest{Incident: "incidents/" + incidentID})
	if err != nil {
		d.t.Fatalf("GetCounts: %v", err)
	}
	return resp
}

func renderCounts(rows []enrollment.CounterRow) string {
	parts := make([]string, len(rows))
	for i, r := range rows {
		parts[i] = fmt.Sprintf("%+v", r)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// batchCodeRows counts a batch's code rows and the distinct subjects they belong to.
func batchCodeRows(t testing.TB, st *gormstore.Store, batchID string) (rows, subjects int64) {
	t.Helper()
	err := st.DB().Raw("SELECT COUNT(*), COUNT(DISTINCT subject_id) FROM codes WHERE batch_id = ?", batchID).
		Row().Scan(&rows, &subjects)
	if err != nil {
		t.Fatalf("count code rows: %v", err)
	}
	return rows, subjects
}

// codeHMAC is the lookup digest the database stores for a display code, under the keyring's
// current key.
func codeHMAC(t testing.TB, keyring *enrollcodes.Keyring, code string) []byte {
	t.Helper()
	parsed, err := enrollcodes.Parse(code)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := keyring.Sum(keyring.Current(), parsed)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
