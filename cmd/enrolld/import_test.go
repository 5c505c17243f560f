package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// importSubjects and cutSubjects size the two files of the rerun test: each takes several
// server-side transactions and many stream messages.
const importSubjects, cutSubjects = 10_000, 20_000

// An import rerun against the real process changes nothing, also across a restart; an
// import cut by SIGKILL keeps what it committed and a rerun adds exactly the rest.
func TestProcessImportRerun(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: imports 30,000 rows per engine three times over")
	}
	t.Parallel()
	path := writeSynthetic(t, importSubjects, "everyone", "IMP", 0)
	cutPath := writeSynthetic(t, cutSubjects, "everyone", "CUT", 1_000_000)
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		d := newDaemon(t, e)
		d.start()
		d.createIncident("imp", "everyone")
		began := time.Now()
		d.mustImport("imp", path, importSubjects, 0)
		elapsed(t, "first import of 10,000 rows", began)
		began = time.Now()
		d.mustImport("imp", path, 0, importSubjects)
		elapsed(t, "rerun of the same 10,000 rows", began)

		// Across a restart the rerun is still a no-op.
		if code, _ := d.term(30 * time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
		d.start()
		d.mustImport("imp", path, 0, importSubjects)

		// Cut an import short with SIGKILL once some of it is committed.
		st := d.openStore()
		countCut := func() int64 {
			var n int64
			if err := st.DB().Raw("SELECT COUNT(*) FROM subjects WHERE external_ref LIKE 'CUT-%'").Row().Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := d.importFile(d.ctx(), "imp", cutPath)
			done <- err
		}()
		deadline := time.Now().Add(2 * time.Minute)
		for countCut() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("nothing of the second file was committed after 2 minutes")
			}
			time.Sleep(2 * time.Millisecond)
		}
		d.kill()
		if err := <-done; err == nil {
			// The whole file went in before the kill: the rerun below still has to be a no-op.
			t.Log("the import finished before the kill landed")
		}
		committed := countCut()
		t.Logf("SIGKILL left %d of %d rows of the cut import committed", committed, cutSubjects)
		d.start()
		resp, readerErrs, err := d.importFile(d.ctx(), "imp", cutPath)
		if err != nil || len(readerErrs) > 0 || resp.GetErrorCount() != 0 {
			t.Fatalf("rerun of the cut import: %v, reader errors %v, response %v", err, readerErrs, resp)
		}
		if resp.GetCreated() != cutSubjects-committed || resp.GetUnchanged() != committed || resp.GetMembershipsAdded() != 0 {
			t.Fatalf("rerun of the cut import: created %d, unchanged %d, memberships added %d; want %d, %d, 0",
				resp.GetCreated(), resp.GetUnchanged(), resp.GetMembershipsAdded(), cutSubjects-committed, committed)
		}
		d.mustImport("imp", cutPath, 0, cutSubjects)

		// Nothing duplicated or lost: subjects, memberships and the cohort's count agree.
		const total = importSubjects + cutSubjects
		var subjects, memberships int64
		if err := st.DB().Raw("SELECT (SELECT COUNT(*) FROM subjects), (SELECT COUNT(*) FROM subject_cohorts)").Row().Scan(&subjects, &memberships); err != nil {
			t.Fatal(err)
		}
		cohorts, err := d.admin.ListCohorts(d.ctx(), &enrollv1.ListCohortsRequest{Parent: "incidents/imp"})
		if err != nil {
			t.Fatal(err)
		}
		if subjects != total || memberships != total || len(cohorts.GetCohorts()) != 1 || cohorts.GetCohorts()[0].GetSubjectCount() != total {
			t.Fatalf("after the imports: %d subjects, %d memberships, cohorts %v; want %d each", subjects, memberships, cohorts.GetCohorts(), total)
		}
	})
}

// Rows that cannot be imported are reported by their line in the file, whether the CSV
// reader or the server rejects them, and the rest of the file is imported.
func TestProcessImportReportsBadLines(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "bad.csv",
		"BAD-0001,everyone,Rivera,1984-03-12,521-73-9101,,98101",          // 2 ok
		"BAD-0002,everyone,,1990-07-01,521-73-9102,,10001",                // 3 no last name
		"BAD-0003,everyone,Chen,31/12/1980,521-73-9103,,10001",            // 4 bad date
		"BAD-0004,everyone,Lee,1980-01-01,12-345,,10001",                  // 5 bad SSN
		"BAD-0005,no-such-cohort,Lee,1980-01-02,521-73-9105,,10001",       // 6 unknown cohort (store)
		"BAD-0006,everyone,Short",                                         // 7 too few fields (reader)
		"BAD 0007!,everyone,Lee,1980-01-03,521-73-9107,,10001",            // 8 bad external_ref
		"BAD-0008,everyone,Lee,1980-01-04,,,10001",                        // 9 neither SSN nor phone
		"BAD-0009,everyone,Novak,1968-02-29,,+1 206 555 0101,30301",       // 10 ok (phone)
		"BAD-0001,everyone,Other,1970-01-01,521-73-9199,,10001",           // 11 same ref, other person
		"BAD-0012,everyone,\"Multi\nLine\",1980-01-05,521-73-9112,,10001", // 12-13 ok (quoted newline)
		"BAD-0014,everyone,Lee,1980-13-01,521-73-9114,,10001",             // 14 bad month
	)
	wantServer := []int64{3, 4, 5, 6, 8, 9, 11, 14}
	wantReader := []int64{7}
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		d := newDaemon(t, e)
		d.start()
		d.createIncident("bad", "everyone")
		for run, wantCreated := range []int64{3, 0} {
			resp, readerErrs, err := d.importFile(d.ctx(), "bad", path)
			if err != nil {
				t.Fatalf("run %d: %v", run+1, err)
			}
			var lines []int64
			for _, e := range resp.GetErrors() {
				lines = append(lines, e.GetLine())
				if e.GetReason() == "" {
					t.Errorf("run %d: line %d rejected without a reason", run+1, e.GetLine())
				}
				if strings.Contains(e.GetReason(), "521-73-91") || strings.Contains(e.GetReason(), "12-345") {
					t.Errorf("run %d: the reason for line %d echoes the SSN: %q", run+1, e.GetLine(), e.GetReason())
				}
			}
			if !slices.Equal(lines, wantServer) || resp.GetErrorCount() != int64(len(wantServer)) || !slices.Equal(readerErrs, wantReader) {
				t.Fatalf("run %d: server rejected lines %v (count %d), reader lines %v; want %v and %v\n%v",
					run+1, lines, resp.GetErrorCount(), readerErrs, wantServer, wantReader, resp.GetErrors())
			}
			if resp.GetCreated() != wantCreated || resp.GetUnchanged() != 3-wantCreated || resp.GetRowsRead() != 11 {
				t.Fatalf("run %d: created %d, unchanged %d, rows read %d; want %d, %d, 11", run+1,
					resp.GetCreated(), resp.GetUnchanged(), resp.GetRowsRead(), wantCreated, 3-wantCreated)
			}
		}
		cohorts, err := d.admin.ListCohorts(d.ctx(), &enrollv1.ListCohortsRequest{Parent: "incidents/bad"})
		if err != nil {
			t.Fatal(err)
		}
		if n := cohorts.GetCohorts()[0].GetSubjectCount(); n != 3 {
			t.Fatalf("cohort has %d subjects after two imports of a file with 3 good rows", n)
		}
	})
}
