package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/apiclient"
	"github.com/idprotect/enroll/internal/eligibility"
)

// IncidentID is the incident every benchmark run creates.
const IncidentID = "bench-incident"

// benchCohorts are the generator's cohorts with the offer of the product spec.
var benchCohorts = []struct {
	id    string
	offer bool
}{
	{eligibility.CohortCredit, true},
	{eligibility.CohortPostpaid, true},
	{eligibility.CohortPrepaid, false},
}

// SystemResult is what the system run measured.
type SystemResult struct {
	Rows            int64
	Import, Issue   time.Duration
	Subjects        int64 // created by the import
	Memberships     int64 // created + memberships_added
	Codes           int64 // issued over all batches
	Batches         int
	BatchNames      []string // batches/{id}, for exports
	RSSEndImport    int64
	RSSEndIssue     int64
	PeakRSS         int64 // highest VmRSS sample
	HWM             int64 // VmHWM at the end (the kernel's own peak)
	Samples         int
	CPUImport       time.Duration // server user+sys CPU during the import
	CPUIssue        time.Duration
	WrittenImport   int64 // bytes the server wrote to storage during the import
	WrittenIssue    int64
	ClientCPUImport time.Duration // this process's CPU during the import (CSV, protobuf)
}

// Combined is rows per second over import plus issue.
func (r *SystemResult) Combined() float64 { return Rate(r.Rows, r.Import+r.Issue) }

// systemRun drives one import + issue through a started server.
type systemRun struct {
	srv      *Server
	sampler  *Sampler
	file     string
	rows     int64 // import only the first rows rows of file
	progress *progress
}

func (r *systemRun) run(parent context.Context) (*SystemResult, error) {
	res := &SystemResult{Rows: r.rows}
	admin := r.srv.Admin()

	ctx, cancel := r.srv.Watch(parent, "while setting up the incident")
	err := setupIncident(ctx, admin)
	cancel()
	if err != nil {
		return nil, r.srv.Cause(ctx, "while setting up the incident", err)
	}

	// Import.
	f, err := os.Open(r.file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rd, err := eligibility.NewReader(f)
	if err != nil {
		return nil, err
	}
	var read int64
	next := func() (*enrollv1.SubjectRecord, error) {
		if read == r.rows {
			return nil, io.EOF
		}
		rec, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s has only %d rows, %d wanted", r.file, read, r.rows)
			}
			return nil, fmt.Errorf("reading %s: %w", r.file, err)
		}
		read++
		return &enrollv1.SubjectRecord{ExternalRef: rec.ExternalRef, Cohort: rec.Cohort, LastName: rec.LastName,
			DateOfBirth: rec.DateOfBirth, Ssn: rec.SSN, Phone: rec.Phone, PostalCode: rec.PostalCode, Line: rec.Line}, nil
	}
	r.sampler.SetPhase("import")
	p0, _ := r.sampler.Sample()
	c0 := selfCPU()
	r.progress.start("system import", r.rows)
	ctx, cancel = r.srv.Watch(parent, "during the import")
	start := time.Now()
	imp, err := apiclient.Import(ctx, admin, IncidentID, 0, next, func(sent int64) { r.progress.update(sent, r.sampler) })
	res.Import = time.Since(start)
	cancel()
	r.progress.done()
	if err != nil {
		return nil, r.srv.Cause(ctx, "during the import", err)
	}
	if imp.GetErrorCount() > 0 {
		e := imp.GetErrors()[0]
		return nil, fmt.Errorf("the server rejected %d rows, e.g. line %d: %s", imp.GetErrorCount(), e.GetLine(), e.GetReason())
	}
	if imp.GetRowsRead() != r.rows {
		return nil, fmt.Errorf("the server read %d rows, %d were sent", imp.GetRowsRead(), r.rows)
	}
	res.ClientCPUImport = selfCPU() - c0
	p1, err := r.sampler.Sample()
	if err != nil {
		return nil, r.srv.Cause(ctx, "after the import", err)
	}
	res.RSSEndImport, res.CPUImport, res.WrittenImport = p1.RSS, p1.CPU-p0.CPU, p1.Written-p0.Written
	res.Subjects = imp.GetCreated()
	res.Memberships = imp.GetCreated() + imp.GetMembershipsAdded()

	// Issue.
	r.sampler.SetPhase("issue")
	ctx, cancel = r.srv.Watch(parent, "during issuance")
	defer cancel()
	start = time.Now()
	resp, err := admin.IssueCodes(ctx, &enrollv1.IssueCodesRequest{Incident: "incidents/" + IncidentID})
	if err != nil {
		return nil, r.srv.Cause(ctx, "during issuance", fmt.Errorf("IssueCodes: %w", err))
	}
	var total int64
	for _, b := range resp.GetBatches() {
		total += b.GetTotal()
	}
	r.progress.start("system issue", total)
	var before int64
	for _, b := range resp.GetBatches() {
		done, err := apiclient.WaitBatch(ctx, admin, b.GetName(), 50*time.Millisecond, func(b *enrollv1.Batch) {
			r.progress.update(before+b.GetIssued(), r.sampler)
		})
		if err != nil {
			r.progress.done()
			return nil, r.srv.Cause(ctx, "during issuance", err)
		}
		before += done.GetIssued()
		res.Batches++
		res.BatchNames = append(res.BatchNames, b.GetName())
	}
	res.Issue = time.Since(start)
	r.progress.done()
	res.Codes = before
	p2, err := r.sampler.Sample()
	if err != nil {
		return nil, r.srv.Cause(ctx, "after issuance", err)
	}
	res.RSSEndIssue, res.CPUIssue, res.HWM, res.WrittenIssue = p2.RSS, p2.CPU-p1.CPU, p2.HWM, p2.Written-p1.Written
	res.PeakRSS, res.Samples = r.sampler.Peak()
	return res, nil
}

func setupIncident(ctx context.Context, admin enrollv1.AdminServiceClient) error {
	if _, err := admin.CreatePartner(ctx, &enrollv1.CreatePartnerRequest{PartnerId: "bench-partner", Partner: &enrollv1.Partner{
		DisplayName: "Benchmark partner", EnrollmentUri: "https://partner.example/enroll",
	}}); err != nil {
		return fmt.Errorf("CreatePartner: %w", err)
	}
	if _, err := admin.CreateIncident(ctx, &enrollv1.CreateIncidentRequest{IncidentId: IncidentID, Incident: &enrollv1.Incident{
		Title: "Issuance benchmark", Partner: "partners/bench-partner",
	}}); err != nil {
		return fmt.Errorf("CreateIncident: %w", err)
	}
	for _, c := range benchCohorts {
		if _, err := admin.CreateCohort(ctx, &enrollv1.CreateCohortRequest{Parent: "incidents/" + IncidentID, CohortId: c.id, Cohort: &enrollv1.Cohort{
			DisplayName: c.id, ExposedData: []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME}, OfferApplies: c.offer,
		}}); err != nil {
			return fmt.Errorf("CreateCohort %s: %w", c.id, err)
		}
	}
	return nil
}
