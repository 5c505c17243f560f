package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// killSubjects is the size of the eligibility file of the kill test: large enough that the
// batch runs for many chunks (100 of --issue-chunk 2000), so the kill lands mid-batch.
const killSubjects = 200_000

// A SIGKILL in the middle of a batch loses nothing and duplicates nothing: the restarted
// process takes the batch over once the dead one's lease lapses and finishes it from where
// it stopped; every subject ends up with exactly one code, the counters equal a recount
// (right after the kill as well as at the end), every exported code is a stored code (all
// of them, checked by HMAC) and a sample of them redeems over gRPC.
func TestProcessKillMidBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: imports and issues 200,000 codes per engine and redeems them (minutes on 2 cores)")
	}
	t.Parallel()
	path := writeSynthetic(t, killSubjects, "everyone", "SUB", 0)
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		// A 1s lease: the restarted process takes the batch over about a second after the kill.
		d := newDaemon(t, e, "--issue-chunk", "2000", "--batch-lease-ttl", "1s")
		d.start()
		d.createIncident("kill", "everyone")
		began := time.Now()
		d.mustImport("kill", path, killSubjects, 0)
		elapsed(t, "import of 200,000 rows", began)

		began = time.Now()
		b := d.issue("kill", "everyone")
		batchID := strings.TrimPrefix(b.GetName(), "batches/")
		if b.GetTotal() != killSubjects {
			t.Fatalf("batch total %d, want %d", b.GetTotal(), killSubjects)
		}
		for {
			cur := d.getBatch(b.GetName())
			if cur.GetState() != enrollv1.BatchState_BATCH_STATE_RUNNING {
				t.Fatalf("the batch finished (%v, %d issued) before the test could kill the server; make the file larger", cur.GetState(), cur.GetIssued())
			}
			if cur.GetIssued() >= killSubjects/5 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		d.kill()
		t.Logf("killed after %v", time.Since(began).Round(time.Millisecond))

		// The moment after the crash: the batch is unfinished, its count matches the code
		// rows, one code per subject, and the counters equal a recount.
		st := d.openStore()
		sb, err := st.GetBatch(context.Background(), batchID)
		if err != nil {
			t.Fatal(err)
		}
		if sb.State != enrollment.BatchRunning || sb.Issued <= 0 || sb.Issued >= killSubjects {
			t.Fatalf("after the kill: batch %s with %d issued; want RUNNING and part-issued", sb.State, sb.Issued)
		}
		if rows, subjects := batchCodeRows(t, st, batchID); rows != sb.Issued || subjects != rows {
			t.Fatalf("after the kill: batch says %d issued, the table has %d code rows for %d subjects", sb.Issued, rows, subjects)
		}
		checkCounters(t, st, "kill", "after the kill")
		t.Logf("killed with %d of %d issued", sb.Issued, killSubjects)

		began = time.Now()
		d.start()
		final := d.waitBatch(b.GetName(), 5*time.Minute)
		elapsed(t, "restart and finishing the batch", began)
		if final.GetIssued() != killSubjects || final.GetTotal() != killSubjects {
			t.Fatalf("final batch: issued %d, total %d; want both %d", final.GetIssued(), final.GetTotal(), killSubjects)
		}
		// The restarted process resumed where the dead one stopped, not from scratch.
		resumed := false
		for _, rec := range d.logRecords("issuance: working on batch") {
			if rec["batch"] == batchID && rec["issued"] == float64(sb.Issued) {
				resumed = true
			}
		}
		if !resumed {
			t.Fatalf("the restarted server's log does not show it resuming %s at %d issued:\n%s", batchID, sb.Issued, tail(d.log(), 20))
		}
		if rows, subjects := batchCodeRows(t, st, batchID); rows != killSubjects || subjects != killSubjects {
			t.Fatalf("after the restart: %d code rows for %d subjects; want %d of each", rows, subjects, killSubjects)
		}
		checkCounters(t, st, "kill", "after the batch finished")
		if c := d.counts("kill").GetCodes(); c.GetIssued() != killSubjects || c.GetOutstanding() != killSubjects {
			t.Fatalf("GetCounts after the batch: %v; want %d issued and outstanding", c, killSubjects)
		}

		began = time.Now()
		rows := d.export(b.GetName())
		elapsed(t, "export of 200,000 codes", began)
		codes := checkExport(t, rows, "SUB", killSubjects)

		// Every exported code is the one the database holds: its HMAC under the deployment's
		// lookup key is a code_hmac of the batch, one to one. That covers all 200,000 codes
		// offline. Redeeming all of them over gRPC took 11 minutes on SQLite on this 2-core
		// machine (~300/s while other work ran), over the default test timeout, so by default
		// a deterministic sample of 5,000 (every 40th reference) is checked ISSUED, redeemed
		// and checked REDEEMED over the API. ENROLL_TEST_REDEEM_ALL=1 redeems every code.
		checkHMACs(t, d, st, batchID, codes)
		every := 40
		if os.Getenv("ENROLL_TEST_REDEEM_ALL") != "" {
			every = 1
		}
		began = time.Now()
		sample := redeemSample(t, d, codes, every)
		elapsed(t, "redemption over gRPC", began)

		checkCounters(t, st, "kill", "after redemption")
		counts := d.counts("kill")
		if c, e := counts.GetCodes(), counts.GetEnrollments(); c.GetIssued() != killSubjects || c.GetRedeemed() != int64(sample) ||
			c.GetOutstanding() != int64(killSubjects-sample) || e.GetPending() != int64(sample) {
			t.Fatalf("GetCounts after %d redemptions: %v", sample, counts)
		}
		if code, took := d.term(30 * time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM (%v)", code, took)
		}
	})
}

// checkExport checks a mail-house export of n subjects with references prefix-0000000...:
// one row per reference, every reference present, every code well formed (check symbol
// included) and unique. It returns the codes in reference order.
func checkExport(t testing.TB, rows []*enrollv1.ExportedCode, prefix string, n int) []string {
	t.Helper()
	if len(rows) != n {
		t.Fatalf("export has %d rows, want %d (one per subject)", len(rows), n)
	}
	byRef := make(map[string]string, n)
	seen := make(map[string]string, n)
	for _, r := range rows {
		if prev, dup := byRef[r.GetExternalRef()]; dup {
			t.Fatalf("export lists %s twice (codes %s and %s)", r.GetExternalRef(), prev, r.GetCode())
		}
		c, err := enrollcodes.Parse(r.GetCode())
		if err != nil || c.String() != r.GetCode() {
			t.Fatalf("export row %s: code %q is not a well-formed display code (%v)", r.GetExternalRef(), r.GetCode(), err)
		}
		if other, dup := seen[r.GetCode()]; dup {
			t.Fatalf("code %s exported for both %s and %s", r.GetCode(), other, r.GetExternalRef())
		}
		byRef[r.GetExternalRef()], seen[r.GetCode()] = r.GetCode(), r.GetExternalRef()
	}
	codes := make([]string, n)
	for i := range n {
		c, ok := byRef[ref(prefix, i)]
		if !ok {
			t.Fatalf("export has no row for %s", ref(prefix, i))
		}
		codes[i] = c
	}
	return codes
}

// checkHMACs checks, without the API, that the exported codes and the batch's code rows are
// the same set: the HMAC of every exported code under the deployment's lookup key is stored
// for the batch, and nothing else is.
func checkHMACs(t testing.TB, d *daemon, st *gormstore.Store, batchID string, codes []string) {
	t.Helper()
	keyring, err := enrollcodes.ParseKeyring(d.getenv("ENROLL_LOOKUP_KEYS"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.DB().Raw("SELECT code_hmac, key_id FROM codes WHERE batch_id = ?", batchID).Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := make(map[string]bool, len(codes))
	for rows.Next() {
		var h []byte
		var kid string
		if err := rows.Scan(&h, &kid); err != nil {
			t.Fatal(err)
		}
		if kid != keyring.Current() {
			t.Fatalf("a code of the batch is stored under lookup key %q, want %q", kid, keyring.Current())
		}
		stored[string(h)] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(codes) {
		t.Fatalf("the batch has %d distinct code HMACs, the export %d codes", len(stored), len(codes))
	}
	for i, c := range codes {
		if !stored[string(codeHMAC(t, keyring, c))] {
			t.Fatalf("exported code #%d (%s) has no row in the batch: it could never be redeemed", i, ref("SUB", i))
		}
	}
}

// redeemSample takes every every-th code (by reference order, so both the codes issued
// before the kill and after it are in), checks each is ISSUED, redeems each over gRPC with
// 16 concurrent workers (every one must succeed) and checks each is then REDEEMED. It
// returns the sample size. With every == 1 it only redeems: the CheckCode passes would
// triple the calls, and a redemption that succeeds has found the code ISSUED.
func redeemSample(t *testing.T, d *daemon, codes []string, every int) int {
	t.Helper()
	var sample []string
	for i := 0; i < len(codes); i += every {
		sample = append(sample, codes[i])
	}
	state := func(want enrollv1.CodeState) func(i int) error {
		return func(i int) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := d.redeem.CheckCode(ctx, &enrollv1.CheckCodeRequest{Code: sample[i]})
			if err == nil && resp.GetState() != want {
				err = fmt.Errorf("CheckCode says %v, want %v", resp.GetState(), want)
			}
			return err
		}
	}
	checkAll := func(want enrollv1.CodeState) {
		t.Helper()
		if every == 1 {
			return
		}
		if fails := forAll(len(sample), 16, state(want)); len(fails) > 0 {
			t.Fatalf("%d of %d sampled codes are not %v:%s", len(fails), len(sample), want, firstFailures(fails, 5))
		}
	}
	checkAll(enrollv1.CodeState_CODE_STATE_ISSUED)
	began := time.Now()
	fails := forAll(len(sample), 16, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for {
			// Unavailable (the database busy under overload) is retryable by contract.
			_, err := d.redeem.RedeemCode(ctx, &enrollv1.RedeemCodeRequest{Code: sample[i]})
			if status.Code(err) != grpccodes.Unavailable || ctx.Err() != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	took := time.Since(began)
	t.Logf("redeemed %d codes in %v (%.0f/s, 16 workers)", len(sample)-len(fails), took.Round(time.Millisecond), float64(len(sample))/took.Seconds())
	if len(fails) > 0 {
		t.Fatalf("%d of %d sampled codes did not redeem:%s", len(fails), len(sample), firstFailures(fails, 5))
	}
	checkAll(enrollv1.CodeState_CODE_STATE_REDEEMED)
	return len(sample)
}
