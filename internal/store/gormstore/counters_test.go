package gormstore_test

import (
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// TestCounterUpsertManyKeys applies one transaction's deltas over more daily rows than one
// multi-row upsert holds, twice, and checks every row.
func TestCounterUpsertManyKeys(t *testing.T) {
	t.Parallel()
	const days = 6000
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, engine := range gormtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			s := engine.Open(t)
			for range 2 {
				if err := gormstore.ApplySpreadDeltas(t.Context(), s, "inc", "coh", start, days); err != nil {
					t.Fatal(err)
				}
			}
			rows, err := s.Counters(t.Context(), "inc")
			if err != nil {
				t.Fatal(err)
			}
			var gauges, daily int
			for _, r := range rows {
				switch {
				case r.Day == "" && r.State == string(enrollment.CodeIssued) && r.N == -2*days,
					r.Day == "" && r.State == string(enrollment.CodeExpired) && r.N == 2*days:
					gauges++
				case r.Day != "" && r.State == string(enrollment.CodeExpired) && r.N == 2:
					daily++
				default:
					t.Fatalf("unexpected counter row %+v", r)
				}
			}
			if gauges != 2 || daily != days {
				t.Fatalf("gauges %d daily %d, want 2 and %d", gauges, daily, days)
			}
		})
	}
}
