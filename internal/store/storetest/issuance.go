package storetest

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
)

// refs returns n external refs with a prefix: P-01, P-02, ...
// refsOf lists the external refs of rows in cohortID.
func refsOf(rows []enrollment.SubjectRow, cohortID string) []string {
	var out []string
	for _, r := range rows {
		if r.CohortID == cohortID {
			out = append(out, r.ExternalRef)
		}
	}
	return out
}

func refs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i+1)
	}
	return out
}

// wantOneCodePerPerson fails t unless the codes of the batches name distinct subjects with
// distinct HMACs, covering exactly the given external refs.
func wantOneCodePerPerson(t testing.TB, f *Fixture, want []string, batchIDs ...string) []store.BatchCode {
	t.Helper()
	var all []store.BatchCode
	subjects, hmacs, gotRefs := map[int64]bool{}, map[string]bool{}, map[string]bool{}
	for _, id := range batchIDs {
		for _, c := range f.BatchCodes(id) {
			if subjects[c.SubjectID] {
				t.Fatalf("subject %d (%s) has more than one code", c.SubjectID, c.ExternalRef)
			}
			if hmacs[string(c.HMAC)] {
				t.Fatalf("code HMAC of %s is not unique", c.ExternalRef)
			}
			subjects[c.SubjectID], hmacs[string(c.HMAC)], gotRefs[c.ExternalRef] = true, true, true
			all = append(all, c)
		}
	}
	wantRefs := map[string]bool{}
	for _, r := range want {
		wantRefs[r] = true
	}
	if !reflect.DeepEqual(gotRefs, wantRefs) {
		t.Fatalf("codes were issued to %v, want %v", gotRefs, wantRefs)
	}
	return all
}

var issuanceTests = map[string]func(t *testing.T, open OpenFunc){
	"batch on a cohort without the offer is failed precondition": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.Subjects(CohortNoOffer, "PRE-1")
		b := &enrollment.Batch{ID: "batch-none", IncidentID: IncidentID, CohortID: CohortNoOffer, RedeemBy: f.Incident.RedeemBy(Base), CreateTime: Base}
		wantKind(t, f.S.CreateBatch(t.Context(), b), enrollment.ErrFailedPrecondition, "batch for a cohort without the offer")
		_, err := f.S.GetBatch(t.Context(), b.ID)
		wantKind(t, err, enrollment.ErrNotFound, "get rejected batch")
		b = &enrollment.Batch{ID: "batch-nope", IncidentID: IncidentID, CohortID: "cohort-nope", RedeemBy: f.Incident.RedeemBy(Base), CreateTime: Base}
		wantKind(t, f.S.CreateBatch(t.Context(), b), enrollment.ErrNotFound, "batch for an unknown cohort")
		_, err = f.S.GetBatch(t.Context(), "batch-nope")
		wantKind(t, err, enrollment.ErrNotFound, "get unknown batch")
	},
	"issuing in small chunks gives every member exactly one code": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		members := refs("A", 7)
		f.Subjects(CohortA, members...)
		f.Subjects(CohortB, "B-01") // not in the batch
		want := f.StartBatch("batch-a", CohortA)
		if want.Total != 7 {
			t.Fatalf("CreateBatch total = %d, want 7 members without a code", want.Total)
		}
		got, err := f.S.GetBatch(t.Context(), want.ID)
		must(t, err, "get batch")
		wantTime(t, "RedeemBy", got.RedeemBy, want.RedeemBy)
		wantTime(t, "CreateTime", got.CreateTime, want.CreateTime)
		if got.State != enrollment.BatchRunning || got.Total != 7 || got.Issued != 0 ||
			got.IncidentID != IncidentID || got.CohortID != CohortA || got.Creator != want.Creator ||
			!bytes.Equal(got.WrappedSecret, want.WrappedSecret) || got.MasterKeyID != want.MasterKeyID || got.LookupKeyID != want.LookupKeyID {
			t.Fatalf("GetBatch = %+v, want %+v", got, want)
		}
		var chunks []int
		for {
			n, err := f.S.IssueNext(t.Context(), want.ID, TestLease, 3, Base, Mint)
			must(t, err, "issue next")
			if n == 0 {
				break
			}
			chunks = append(chunks, n)
			if len(chunks) > 10 {
				t.Fatalf("IssueNext never completes: chunks %v", chunks)
			}
		}
		if !reflect.DeepEqual(chunks, []int{3, 3, 1}) {
			t.Fatalf("IssueNext(limit 3) chunks = %v, want [3 3 1]", chunks)
		}
		got, err = f.S.GetBatch(t.Context(), want.ID)
		must(t, err, "get batch")
		if got.Issued != got.Total || got.Total != 7 {
			t.Fatalf("batch issued %d of %d, want 7 of 7", got.Issued, got.Total)
		}
		codes := wantOneCodePerPerson(t, f, members, want.ID)
		for _, c := range codes {
			if h, kid := Mint(c.SubjectID, c.Attempt); !bytes.Equal(c.HMAC, h) || c.KeyID != kid {
				t.Fatalf("code of %s is not mint(subject, attempt %d)", c.ExternalRef, c.Attempt)
			}
			if c.CohortID != CohortA {
				t.Fatalf("code of %s has cohort %q", c.ExternalRef, c.CohortID)
			}
			wantTime(t, "code RedeemBy", c.RedeemBy, want.RedeemBy)
		}
		must(t, f.S.FinishBatch(t.Context(), want.ID, enrollment.BatchSucceeded, "", Base.Add(1)), "finish batch")
		got, err = f.S.GetBatch(t.Context(), want.ID)
		must(t, err, "get finished batch")
		if got.State != enrollment.BatchSucceeded {
			t.Fatalf("state after FinishBatch = %s, want SUCCEEDED", got.State)
		}
	},
	"a person in two cohorts gets one code when both are issued": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.Import(IncidentID, Row(2, "APP-1", CohortA, "ann"), Row(3, "APP-2", CohortA, "bob"),
			Row(4, "POST-1", CohortB, "ann"), Row(5, "POST-2", CohortB, "cy"))
		// Both batches start before either issues: B's total still counts ann.
		a := f.StartBatch("batch-a", CohortA)
		b := f.StartBatch("batch-b", CohortB)
		if a.Total != 2 || b.Total != 2 {
			t.Fatalf("totals = %d and %d, want 2 and 2", a.Total, b.Total)
		}
		if n := f.Drain(a.ID, 1, Mint); n != 2 {
			t.Fatalf("batch A issued %d, want 2", n)
		}
		if n := f.Drain(b.ID, 1, Mint); n != 1 {
			t.Fatalf("batch B issued %d, want 1: ann already has a code from A", n)
		}
		wantOneCodePerPerson(t, f, []string{"APP-1", "APP-2", "POST-2"}, a.ID, b.ID)
		// A batch created now sees ann covered.
		if c := f.StartBatch("batch-b2", CohortB); c.Total != 0 {
			t.Fatalf("new cohort B batch total = %d, want 0", c.Total)
		}
	},
	"a long run of members coded in another cohort is skipped, not taken for the end": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		// 100 people in both cohorts (more than one issuance transaction looks at with
		// limit 2), then one person only in cohort B.
		var rows []enrollment.SubjectRow
		for i := range 100 {
			person := fmt.Sprintf("both-%03d", i)
			rows = append(rows, Row(int64(2*i+2), "A-"+person, CohortA, person), Row(int64(2*i+3), "B-"+person, CohortB, person))
		}
		rows = append(rows, Row(300, "B-only", CohortB, "only-b"))
		f.Import(IncidentID, rows...)
		a := f.StartBatch("batch-a", CohortA)
		if n := f.Drain(a.ID, 50, Mint); n != 100 {
			t.Fatalf("batch A issued %d, want 100", n)
		}
		b := f.StartBatch("batch-b", CohortB)
		if n := f.Drain(b.ID, 2, Mint); n != 1 {
			t.Fatalf("batch B issued %d, want 1 (the one person not in cohort A)", n)
		}
		wantOneCodePerPerson(t, f, append(refsOf(rows[0:200:200], CohortA), "B-only"), a.ID, b.ID)
	},
	"a second batch for an issued cohort issues nothing": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.Subjects(CohortA, refs("A", 3)...)
		first := f.Issue("batch-1", CohortA)
		if first.Total != 3 || first.Issued != 3 {
			t.Fatalf("first batch %d of %d, want 3 of 3", first.Issued, first.Total)
		}
		second := f.StartBatch("batch-2", CohortA)
		if second.Total != 0 {
			t.Fatalf("second batch total = %d, want 0", second.Total)
		}
		if n := f.Drain(second.ID, 10, Mint); n != 0 {
			t.Fatalf("second batch issued %d, want 0", n)
		}
		if codes := f.BatchCodes(second.ID); len(codes) != 0 {
			t.Fatalf("second batch has %d codes", len(codes))
		}
		wantOneCodePerPerson(t, f, refs("A", 3), first.ID, second.ID)
		dup := &enrollment.Batch{ID: first.ID, IncidentID: IncidentID, CohortID: CohortA, RedeemBy: first.RedeemBy, CreateTime: Base}
		wantKind(t, f.S.CreateBatch(t.Context(), dup), enrollment.ErrAlreadyExists, "create batch with a taken id")
	},
	"colliding HMACs move to the next attempt": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.Subjects(CohortA, refs("A", 5)...)
		f.Subjects(CohortB, refs("B", 2)...)
		// Attempt 0 yields the same HMAC for everyone; later attempts are distinct.
		collide := func(subjectID int64, attempt uint32) ([]byte, string) {
			if attempt == 0 {
				return Mint(0, 0)
			}
			return Mint(subjectID, attempt)
		}
		f.StartBatch("batch-a", CohortA)
		f.StartBatch("batch-b", CohortB)
		// Limit 2: collisions within a chunk and against earlier chunks and batches.
		if n := f.Drain("batch-a", 2, collide); n != 5 {
			t.Fatalf("batch A issued %d, want 5", n)
		}
		if n := f.Drain("batch-b", 2, collide); n != 2 {
			t.Fatalf("batch B issued %d, want 2", n)
		}
		codes := wantOneCodePerPerson(t, f, append(refs("A", 5), refs("B", 2)...), "batch-a", "batch-b")
		zero := 0
		for _, c := range codes {
			if c.Attempt == 0 {
				zero++
			}
			if h, _ := collide(c.SubjectID, c.Attempt); !bytes.Equal(c.HMAC, h) {
				t.Fatalf("code of %s does not re-derive from its recorded attempt %d", c.ExternalRef, c.Attempt)
			}
		}
		if zero != 1 {
			t.Fatalf("%d codes kept attempt 0, want exactly 1 (the rest collided)", zero)
		}
	},
	"concurrent batches over overlapping cohorts give one code per person": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		var rows []enrollment.SubjectRow
		var people []string // each person's first ref, which their code carries
		for i := range 30 {
			person := fmt.Sprintf("p%02d", i)
			switch {
			case i < 10: // in both cohorts
				rows = append(rows, Row(int64(2*i), "A-"+person, CohortA, person), Row(int64(2*i+1), "B-"+person, CohortB, person))
				people = append(people, "A-"+person)
			case i < 20:
				rows = append(rows, Row(int64(2*i), "A-"+person, CohortA, person))
				people = append(people, "A-"+person)
			default:
				rows = append(rows, Row(int64(2*i), "B-"+person, CohortB, person))
				people = append(people, "B-"+person)
			}
		}
		f.Import(IncidentID, rows...)
		// Two batches for A (a retried request) and one for B, issued at the same time as
		// replicas would.
		batches := []string{"batch-a1", "batch-a2", "batch-b"}
		f.StartBatch(batches[0], CohortA)
		f.StartBatch(batches[1], CohortA)
		f.StartBatch(batches[2], CohortB)
		errs := make([]error, len(batches))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, id := range batches {
			wg.Go(func() {
				<-start
				for range 1000 {
					n, err := f.S.IssueNext(t.Context(), id, TestLease, 2, Base, Mint)
					if err != nil || n == 0 {
						errs[i] = err
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("IssueNext of %s: %v", batches[i], err)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		// Finish the work sequentially in case a worker stopped early, as a rerun would.
		for _, id := range batches {
			f.Drain(id, 2, Mint)
		}
		codes := wantOneCodePerPerson(t, f, people, batches...)
		var issued int64
		for _, id := range batches {
			b, err := f.S.GetBatch(t.Context(), id)
			must(t, err, "get batch")
			if n := int64(len(f.BatchCodes(id))); b.Issued != n {
				t.Errorf("batch %s says issued %d, has %d codes", id, b.Issued, n)
			}
			issued += b.Issued
		}
		if issued != int64(len(codes)) {
			t.Fatalf("batches issued %d in all, %d codes exist", issued, len(codes))
		}
		counts := f.wantCountersEqualRecount("after concurrent issuance")
		if got := counts["cohort-a/code/ISSUED"] + counts["cohort-b/code/ISSUED"]; got != 30 {
			t.Fatalf("issued counters sum to %d, want 30 (%v)", got, counts)
		}
	},
	"list batch codes pages through every code once": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.Subjects(CohortA, refs("A", 8)...)
		f.Subjects(CohortB, refs("B", 3)...)
		f.Issue("batch-b", CohortB) // interleaved ids must not leak into batch A's listing
		a := f.Issue("batch-a", CohortA)
		full := f.BatchCodes(a.ID)
		var paged []store.BatchCode
		var after int64
		for pages := 0; ; pages++ {
			page, err := f.S.ListBatchCodes(t.Context(), a.ID, after, 3)
			must(t, err, "list batch codes")
			if len(page) > 3 || pages > 10 {
				t.Fatalf("page of %d codes after %d pages", len(page), pages)
			}
			if len(page) == 0 {
				break
			}
			for i, c := range page {
				if c.CodeID <= after || (i > 0 && c.CodeID <= page[i-1].CodeID) {
					t.Fatalf("code ids not increasing past %d: %d", after, c.CodeID)
				}
			}
			paged = append(paged, page...)
			after = page[len(page)-1].CodeID
		}
		if !reflect.DeepEqual(paged, full) {
			t.Fatalf("paged codes differ from one full listing:\n%+v\n%+v", paged, full)
		}
		wantOneCodePerPerson(t, f, refs("A", 8), a.ID)
		for _, c := range paged {
			v, err := f.S.LookupCode(t.Context(), [][]byte{c.HMAC})
			must(t, err, "lookup listed code")
			if v.Code.ID != c.CodeID || v.Code.SubjectID != c.SubjectID || v.ExternalRef != c.ExternalRef || v.Code.BatchID != a.ID {
				t.Fatalf("listed %+v, lookup %+v (ref %s)", c, v.Code, v.ExternalRef)
			}
		}
	},
	"purge destroys the wrapped secret and is idempotent": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.Subjects(CohortA, "A-01")
		b := f.Issue("batch-a", CohortA)
		if len(b.WrappedSecret) == 0 {
			t.Fatal("wrapped secret not stored")
		}
		for i := range 2 {
			got, err := f.S.PurgeBatchSecret(t.Context(), b.ID, Base.AddDate(0, 0, 1+i))
			must(t, err, "purge")
			if got.WrappedSecret != nil || got.ID != b.ID || got.Issued != 1 {
				t.Fatalf("purge %d returned %+v, want the batch with a nil secret", i+1, got)
			}
			if got, _ = f.S.GetBatch(t.Context(), b.ID); got == nil || got.WrappedSecret != nil {
				t.Fatalf("after purge %d GetBatch = %+v, want a nil secret", i+1, got)
			}
		}
		_, err := f.S.PurgeBatchSecret(t.Context(), "batch-nope", Base)
		wantKind(t, err, enrollment.ErrNotFound, "purge unknown batch")
		if codes := f.BatchCodes(b.ID); len(codes) != 1 {
			t.Fatalf("purge removed code rows: %d left", len(codes))
		}
	},
}
