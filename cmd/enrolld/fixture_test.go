package main

// What an operator does to a running enrolld, over gRPC: a partner and an incident with
// cohorts, an eligibility file imported the way enrollctl reads one, a batch, its export.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/apiclient"
	"github.com/idprotect/enroll/internal/eligibility"
)

// createIncident makes partner "monitor" (if absent), incident incidentID served by it, and
// one offered cohort per id in cohorts.
func (d *daemon) createIncident(incidentID string, cohorts ...string) {
	t := d.t
	t.Helper()
	ctx := d.ctx()
	_, err := d.admin.CreatePartner(ctx, &enrollv1.CreatePartnerRequest{PartnerId: "monitor", Partner: &enrollv1.Partner{
		DisplayName: "Monitor", EnrollmentUri: "https://monitor.example/enroll",
	}})
	if err != nil {
		t.Fatalf("CreatePartner: %v", err)
	}
	if _, err := d.admin.CreateIncident(ctx, &enrollv1.CreateIncidentRequest{IncidentId: incidentID, Incident: &enrollv1.Incident{
		Title: "Breach " + incidentID, Partner: "partners/monitor",
	}}); err != nil {
		t.Fatalf("CreateIncident: %v", err)
	}
	for _, c := range cohorts {
		if _, err := d.admin.CreateCohort(ctx, &enrollv1.CreateCohortRequest{Parent: "incidents/" + incidentID, CohortId: c, Cohort: &enrollv1.Cohort{
			DisplayName:        "Cohort " + c,
			ExposedData:        []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME, enrollv1.ExposedData_EXPOSED_DATA_SSN},
			RecommendedActions: []string{"Freeze your credit."},
			OfferApplies:       true,
		}}); err != nil {
			t.Fatalf("CreateCohort %s: %v", c, err)
		}
	}
}

// header is the column line of every eligibility file the tests write.
const header = "external_ref,cohort,last_name,date_of_birth,ssn,phone,postal_code"

var lastNames = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Okafor", "Novak", "Nguyen", "Lee"}

// writeSynthetic writes an eligibility file of n people, all in cohort, with references
// prefix-0000000... Unlike eligibility.Generate (which spreads rows over three cohorts and
// repeats some people under a second reference on purpose) every row here is a distinct
// person: the postal code and the SSN's last four digits together encode person+i, so n
// rows make exactly n subjects and n codes. Files imported into one incident need person
// ranges that do not overlap, or their people are matched as the same.
func writeSynthetic(t testing.TB, n int, cohort, prefix string, person int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), prefix+".csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<16)
	fmt.Fprintln(w, header)
	for i := range n {
		p := person + i
		fmt.Fprintf(w, "%s,%s,%s,%04d-%02d-%02d,%03d-%02d-%04d,,%05d\n",
			ref(prefix, i), cohort, lastNames[p%len(lastNames)], 1940+p%60, 1+p%12, 1+p%28,
			100+(p/10000)%800, 10+p%89, p%10000, p/10000)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func ref(prefix string, i int) string { return fmt.Sprintf("%s-%07d", prefix, i) }

// writeFile writes an eligibility file from lines (the header is added).
func writeFile(t testing.TB, name string, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	content := header + "\n"
	for _, l := range lines {
		content += l + "\n"
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// importFile streams an eligibility file to ImportSubjects the way enrollctl does: the
// streaming reader, rows it cannot parse collected by line, every other row sent with its
// line number. It returns the server's answer and the lines the reader rejected.
func (d *daemon) importFile(ctx context.Context, incidentID, path string) (*enrollv1.ImportSubjectsResponse, []int64, error) {
	d.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	rd, err := eligibility.NewReader(f)
	if err != nil {
		d.t.Fatalf("read %s: %v", path, err)
	}
	var readerErrs []int64
	next := func() (*enrollv1.SubjectRecord, error) {
		for {
			r, err := rd.Next()
			var re *eligibility.RowError
			if errors.As(err, &re) {
				readerErrs = append(readerErrs, re.Line)
				continue
			}
			if err != nil {
				return nil, err // io.EOF ends the import
			}
			return &enrollv1.SubjectRecord{
				ExternalRef: r.ExternalRef, Cohort: r.Cohort, LastName: r.LastName, DateOfBirth: r.DateOfBirth,
				Ssn: r.SSN, Phone: r.Phone, PostalCode: r.PostalCode, Line: r.Line,
			}, nil
		}
	}
	resp, err := apiclient.Import(ctx, d.admin, incidentID, 100000, next, nil)
	return resp, readerErrs, err
}

// mustImport imports a file that has no bad rows and checks the counts.
func (d *daemon) mustImport(incidentID, path string, wantCreated, wantUnchanged int64) *enrollv1.ImportSubjectsResponse {
	d.t.Helper()
	resp, readerErrs, err := d.importFile(d.ctx(), incidentID, path)
	if err != nil {
		d.t.Fatalf("import %s: %v", filepath.Base(path), err)
	}
	if len(readerErrs) > 0 || resp.GetErrorCount() != 0 || resp.GetCreated() != wantCreated || resp.GetUnchanged() != wantUnchanged ||
		resp.GetMembershipsAdded() != 0 || resp.GetStopped() {
		d.t.Fatalf("import %s: reader errors %v, response %v; want created %d, unchanged %d and nothing else",
			filepath.Base(path), readerErrs, resp, wantCreated, wantUnchanged)
	}
	return resp
}

// issue starts a batch for one cohort and returns it (RUNNING).
func (d *daemon) issue(incidentID, cohort string) *enrollv1.Batch {
	d.t.Helper()
	resp, err := d.admin.IssueCodes(d.ctx(), &enrollv1.IssueCodesRequest{Cohort: "incidents/" + incidentID + "/cohorts/" + cohort})
	if err != nil {
		d.t.Fatalf("IssueCodes: %v", err)
	}
	if len(resp.GetBatches()) != 1 {
		d.t.Fatalf("IssueCodes: %d batches, want 1", len(resp.GetBatches()))
	}
	return resp.GetBatches()[0]
}

// waitBatch waits for a batch to succeed.
func (d *daemon) waitBatch(name string, limit time.Duration) *enrollv1.Batch {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx(), limit)
	defer cancel()
	b, err := apiclient.WaitBatch(ctx, d.admin, name, 100*time.Millisecond, nil)
	if err != nil {
		d.t.Fatalf("wait for %s: %v (batch %v); log:\n%s", name, err, b, tail(d.log(), 30))
	}
	return b
}

func (d *daemon) getBatch(name string) *enrollv1.Batch {
	d.t.Helper()
	resp, err := d.admin.GetBatch(d.ctx(), &enrollv1.GetBatchRequest{Name: name})
	if err != nil {
		d.t.Fatalf("GetBatch: %v", err)
	}
	return resp.GetBatch()
}

// export reads a batch's whole mail-house stream.
func (d *daemon) export(name string) []*enrollv1.ExportedCode {
	d.t.Helper()
	rows, err := d.tryExport(d.ctx(), name)
	if err != nil {
		d.t.Fatalf("ExportBatchCodes %s: %v", name, err)
	}
	return rows
}

func (d *daemon) tryExport(ctx context.Context, name string) ([]*enrollv1.ExportedCode, error) {
	stream, err := d.admin.ExportBatchCodes(ctx, &enrollv1.ExportBatchCodesRequest{Name: name})
	if err != nil {
		return nil, err
	}
	var rows []*enrollv1.ExportedCode
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, resp.GetCodes()...)
	}
}

// forAll calls fn for every index in [0, n) on workers goroutines and returns the errors
// by index (nil where fn succeeded).
func forAll(n, workers int, fn func(i int) error) map[int]error {
	var (
		next  atomic.Int64
		mu    sync.Mutex
		fails = map[int]error{}
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					fails[i] = err
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return fails
}

// firstFailures renders up to n failures of forAll, lowest index first.
func firstFailures(fails map[int]error, n int) string {
	idx := make([]int, 0, len(fails))
	for i := range fails {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out := ""
	for _, i := range idx[:min(n, len(idx))] {
		out += fmt.Sprintf("\n  #%d: %v", i, fails[i])
	}
	return out
}
