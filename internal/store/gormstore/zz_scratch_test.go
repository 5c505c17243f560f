package gormstore_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

func TestZZScratch(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ZZN"))
	for _, e := range gormtest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			s := e.Open(t)
			ctx := context.Background()
			_ = s.CreatePartner(ctx, &enrollment.Partner{ID: "alpha", DisplayName: "a", EnrollmentURI: "x"})
			_ = s.CreatePartner(ctx, &enrollment.Partner{ID: "beta", DisplayName: "a", EnrollmentURI: "x"})
			start := time.Now()
			if err := s.CreateReconcileRun(ctx, "run1", time.Now()); err != nil {
				t.Fatal(err)
			}
			var lines []store.InvoiceLine
			var ms runtime.MemStats
			for i := 0; i < n; i++ {
				lines = append(lines, store.InvoiceLine{Line: int64(i + 1), MemberID: fmt.Sprintf("U-%07d", i%(n/2+1))})
				if len(lines) == 1000 {
					if err := s.StageInvoiceLines(ctx, "run1", "alpha", lines); err != nil {
						t.Fatal(err)
					}
					lines = lines[:0]
				}
			}
			runtime.ReadMemStats(&ms)
			t.Logf("stage %v heap %dMB", time.Since(start), ms.HeapAlloc>>20)
			start = time.Now()
			m0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
			c, err := s.CountReconcileRun(ctx, "run1", "alpha", m0, m0.AddDate(0, 1, 0))
			t.Logf("count %v %v %v", time.Since(start), c, err)
			start = time.Now()
			var after int64
			got := 0
			for got < 10000 {
				rows, err := s.ListBilledNotBillable(ctx, "run1", "alpha", m0, m0.AddDate(0, 1, 0), after, 1000)
				if err != nil {
					t.Fatal(err)
				}
				got += len(rows)
				if len(rows) < 1000 {
					break
				}
				after = rows[len(rows)-1].Line
			}
			t.Logf("list %d %v", got, time.Since(start))
			start = time.Now()
			if err := s.DeleteReconcileRun(ctx, "run1"); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&ms)
			t.Logf("delete %v heap %dMB", time.Since(start), ms.HeapAlloc>>20)
		})
	}
}
