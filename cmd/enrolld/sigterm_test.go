package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// termShutdownTimeout is the drain budget the SIGTERM test gives enrolld.
const termShutdownTimeout = 10 * time.Second

// SIGTERM while a mail-house export is streaming and a batch is issuing: the export in
// flight completes, the process exits 0 within its shutdown timeout and logs "stopped", the
// database is consistent, and the next start finishes the batch from where it stopped.
func TestProcessGracefulSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: imports and issues 50,000 codes per engine")
	}
	t.Parallel()
	// pending is large enough, at 500 codes per transaction, to be still issuing when the
	// shutdown reaches the issuance worker (after the export has drained).
	const mailed, pending = 10_000, 40_000
	mailedPath := writeSynthetic(t, mailed, "mailed", "MAIL", 0)
	pendingPath := writeSynthetic(t, pending, "pending", "PEND", 1_000_000)
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		began := time.Now()
		d := newDaemon(t, e, "--shutdown-timeout", termShutdownTimeout.String(), "--batch-lease-ttl", "1s", "--issue-chunk", "500")
		d.start()
		d.createIncident("term", "mailed", "pending")
		d.mustImport("term", mailedPath, mailed, 0)
		d.mustImport("term", pendingPath, pending, 0)
		mb := d.issue("term", "mailed")
		d.waitBatch(mb.GetName(), 2*time.Minute)

		// The export is in flight: its first message is here, the rest is still to come.
		ctx, cancel := context.WithTimeout(d.ctx(), time.Minute)
		defer cancel()
		stream, err := d.admin.ExportBatchCodes(ctx, &enrollv1.ExportBatchCodesRequest{Name: mb.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatalf("first export message: %v", err)
		}
		rows := first.GetCodes()
		pb := d.issue("term", "pending")
		pendingID := strings.TrimPrefix(pb.GetName(), "batches/")
		for d.getBatch(pb.GetName()).GetIssued() == 0 {
			time.Sleep(5 * time.Millisecond)
		}

		d.signal(syscall.SIGTERM)
		termAt := time.Now()
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("the export in flight was cut by the shutdown after %d rows: %v", len(rows), err)
			}
			rows = append(rows, resp.GetCodes()...)
		}
		checkExport(t, rows, "MAIL", mailed)
		code := d.waitExit(termShutdownTimeout + 5*time.Second)
		took := time.Since(termAt)
		t.Logf("exit %d %v after SIGTERM", code, took.Round(time.Millisecond))
		if code != 0 {
			t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, tail(d.log(), 20))
		}
		if took > termShutdownTimeout+2*time.Second {
			t.Fatalf("exit took %v, more than the shutdown timeout %v", took, termShutdownTimeout)
		}
		if len(d.logRecords("stopped")) != 1 || len(d.logRecords("shutting down")) != 1 {
			t.Fatalf("the log does not show an orderly shutdown:\n%s", tail(d.log(), 20))
		}
		if n := len(d.logRecords("grpc drain timed out; closing remaining calls")); n != 0 {
			t.Fatalf("the drain timed out although the only call in flight was a finishing export")
		}

		// Stopped mid-batch: the batch is unfinished and consistent.
		st := d.openStore()
		sb, err := st.GetBatch(context.Background(), pendingID)
		if err != nil {
			t.Fatal(err)
		}
		if sb.State != enrollment.BatchRunning || sb.Issued <= 0 || sb.Issued >= pending {
			t.Fatalf("after SIGTERM the batch is %s with %d of %d issued; the test wants it stopped mid-batch (make it larger)", sb.State, sb.Issued, pending)
		}
		if n, subjects := batchCodeRows(t, st, pendingID); n != sb.Issued || subjects != n {
			t.Fatalf("after SIGTERM: batch says %d issued, the table has %d code rows for %d subjects", sb.Issued, n, subjects)
		}
		checkCounters(t, st, "term", "after SIGTERM")
		t.Logf("stopped with %d of %d issued", sb.Issued, pending)

		d.start()
		final := d.waitBatch(pb.GetName(), 3*time.Minute)
		if final.GetIssued() != pending || final.GetTotal() != pending {
			t.Fatalf("after the restart: issued %d, total %d; want %d", final.GetIssued(), final.GetTotal(), pending)
		}
		resumed := false
		for _, rec := range d.logRecords("issuance: working on batch") {
			resumed = resumed || rec["batch"] == pendingID && rec["issued"] == float64(sb.Issued)
		}
		if !resumed {
			t.Fatalf("the restarted server's log does not show it resuming at %d issued:\n%s", sb.Issued, tail(d.log(), 20))
		}
		checkExport(t, d.export(pb.GetName()), "PEND", pending)
		checkCounters(t, st, "term", "after the restart")
		if c := d.counts("term").GetCodes(); c.GetIssued() != mailed+pending || c.GetOutstanding() != mailed+pending {
			t.Fatalf("GetCounts after the restart: %v; want %d issued and outstanding", c, mailed+pending)
		}

		// An idle server stops at once.
		code, took = d.term(termShutdownTimeout + 5*time.Second)
		if code != 0 || took > 3*time.Second || len(d.logRecords("stopped")) != 1 {
			t.Fatalf("idle SIGTERM: exit %d after %v; log:\n%s", code, took, tail(d.log(), 10))
		}
		elapsed(t, "SIGTERM scenario", began)
	})
}
