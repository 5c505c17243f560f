package storetest

import (
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
)

var leaseTests = map[string]func(t *testing.T, open OpenFunc){
	"a held lease keeps other workers out until it expires": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.Subjects(CohortA, refs("A", 5)...)
		b := f.StartBatch("batch-a", CohortA)
		a := store.Lease{Owner: "worker-a", Until: Base.Add(time.Minute)}
		n, err := f.S.IssueNext(t.Context(), b.ID, a, 2, Base, Mint)
		must(t, err, "worker a issues")
		if n != 2 {
			t.Fatalf("worker a issued %d, want 2", n)
		}
		other := store.Lease{Owner: "worker-b", Until: Base.Add(2 * time.Minute)}
		_, err = f.S.IssueNext(t.Context(), b.ID, other, 2, Base.Add(30*time.Second), Mint)
		wantKind(t, err, enrollment.ErrFailedPrecondition, "worker b while a's lease runs")
		if _, err := f.S.NextRunnableBatch(t.Context(), "worker-b", Base.Add(30*time.Second)); err == nil {
			t.Fatal("NextRunnableBatch offered a batch under another worker's lease")
		}
		got, err := f.S.NextRunnableBatch(t.Context(), "worker-a", Base.Add(30*time.Second))
		must(t, err, "owner finds its own batch")
		if got.ID != b.ID || got.LeaseOwner != "worker-a" {
			t.Fatalf("NextRunnableBatch = %+v", got)
		}
		// Worker a dies; once its lease has expired worker b takes over where a stopped.
		late := Base.Add(2 * time.Minute)
		if _, err := f.S.NextRunnableBatch(t.Context(), "worker-b", late); err != nil {
			t.Fatalf("expired lease not offered to another worker: %v", err)
		}
		total := 2
		for {
			n, err := f.S.IssueNext(t.Context(), b.ID, store.Lease{Owner: "worker-b", Until: late.Add(time.Minute)}, 2, late, Mint)
			must(t, err, "worker b takes over")
			if n == 0 {
				break
			}
			total += n
		}
		if total != 5 {
			t.Fatalf("issued %d codes in all, want exactly 5", total)
		}
		must(t, f.S.FinishBatch(t.Context(), b.ID, enrollment.BatchSucceeded, "", late), "finish")
		if _, err := f.S.NextRunnableBatch(t.Context(), "worker-b", late); err == nil {
			t.Fatal("a finished batch is still offered")
		}
	},
	"list batches newest first with paging": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.Subjects(CohortA, "A-01")
		f.Subjects(CohortB, "B-01")
		for _, id := range []string{"b1", "b2", "b3"} {
			f.StartBatch(id, CohortA)
		}
		page1, err := f.S.ListBatches(t.Context(), IncidentID, "", 2)
		must(t, err, "list")
		if ids(page1, batchID) != "[b3 b2]" {
			t.Fatalf("page 1 = %v", ids(page1, batchID))
		}
		page2, err := f.S.ListBatches(t.Context(), IncidentID, page1[1].ID, 2)
		must(t, err, "list page 2")
		if ids(page2, batchID) != "[b1]" {
			t.Fatalf("page 2 = %v", ids(page2, batchID))
		}
		none, err := f.S.ListBatches(t.Context(), "other-incident", "", 10)
		must(t, err, "list other")
		if len(none) != 0 {
			t.Fatalf("batches of another incident listed: %v", ids(none, batchID))
		}
	},
}

func batchID(b *enrollment.Batch) string { return b.ID }
