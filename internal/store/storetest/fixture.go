package storetest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store"
)

// Fixed instants: nothing in the suite reads the wall clock.
var (
	// Base is when the fixture creates its resources and issues codes.
	Base = time.Date(2024, 2, 1, 10, 0, 0, 0, time.UTC)
	// RedeemTime is when the fixture redeems codes: inside the redeem window.
	RedeemTime = time.Date(2024, 2, 20, 10, 0, 0, 0, time.UTC)
	// TestLease is the batch lease the suite's issuance runs under.
	TestLease = store.Lease{Owner: "storetest", Until: Base.Add(time.Hour)}
)

// Ids the fixture seeds.
const (
	PartnerID  = "partner-a"
	IncidentID = "incident-a"
	// CohortA and CohortB are offered protection; CohortNoOffer is not.
	CohortA       = "cohort-a"
	CohortB       = "cohort-b"
	CohortNoOffer = "cohort-none"
	// MintKeyID is the lookup key id Mint reports.
	MintKeyID = "test-key-1"
)

// Test keys: fixed so every run derives the same HMACs. Not secrets.
var (
	mintKey     = []byte("storetest code key, not a secret")
	identityKey = []byte("storetest identity key, not a secret")
)

// Mint is a deterministic store.MintFunc: HMAC-SHA256 under a test key over the subject id
// and the attempt number, both big-endian.
func Mint(subjectID int64, attempt uint32) ([]byte, string) {
	var msg [12]byte
	binary.BigEndian.PutUint64(msg[:8], uint64(subjectID))
	binary.BigEndian.PutUint32(msg[8:], attempt)
	m := hmac.New(sha256.New, mintKey)
	m.Write(msg[:])
	return m.Sum(nil), MintKeyID
}

// IdentityKey is the identity key of a person, named by any string that identifies them in a
// test (two rows with the same person are the same human).
func IdentityKey(person string) []byte {
	m := hmac.New(sha256.New, identityKey)
	m.Write([]byte(person))
	return m.Sum(nil)
}

// Row is one import row.
func Row(line int64, ref, cohortID, person string) enrollment.SubjectRow {
	return enrollment.SubjectRow{Line: line, ExternalRef: ref, CohortID: cohortID, IdentityKey: IdentityKey(person)}
}

// Fixture is a store seeded with partner PartnerID, incident IncidentID (default offer
// terms: 24 months, 180-day redeem window, 30-day activation window) and cohorts CohortA,
// CohortB and CohortNoOffer. Its helpers fail the test on any error.
type Fixture struct {
	T        testing.TB
	S        store.Store
	Incident *enrollment.Incident
}

// NewFixture opens a store and seeds it.
func NewFixture(t testing.TB, open OpenFunc) *Fixture {
	t.Helper()
	f := &Fixture{T: t, S: open(t)}
	f.AddPartner(PartnerID)
	f.Incident = f.AddIncident(IncidentID, PartnerID)
	f.AddCohort(IncidentID, CohortA, true)
	f.AddCohort(IncidentID, CohortB, true)
	f.AddCohort(IncidentID, CohortNoOffer, false)
	return f
}

// AddPartner creates a partner.
func (f *Fixture) AddPartner(id string) *enrollment.Partner {
	f.T.Helper()
	p := &enrollment.Partner{ID: id, DisplayName: "Partner " + id, EnrollmentURI: "https://" + id + ".example/enroll"}
	must(f.T, f.S.CreatePartner(f.T.Context(), p), "create partner "+id)
	return p
}

// AddIncident creates an incident with the default offer terms.
func (f *Fixture) AddIncident(id, partnerID string) *enrollment.Incident {
	f.T.Helper()
	in := &enrollment.Incident{
		ID: id, Title: "Breach " + id, DiscloseTime: Base.Add(-24 * time.Hour),
		PartnerID: partnerID, CreateTime: Base,
	}
	in.ApplyDefaults()
	must(f.T, f.S.CreateIncident(f.T.Context(), in), "create incident "+id)
	return in
}

// AddCohort creates a cohort.
func (f *Fixture) AddCohort(incidentID, id string, offer bool) *enrollment.Cohort {
	f.T.Helper()
	c := &enrollment.Cohort{
		IncidentID: incidentID, ID: id, DisplayName: "Cohort " + id,
		ExposedData: []string{"NAME", "SSN"}, RecommendedActions: []string{"Freeze your credit."},
		OfferApplies: offer,
	}
	must(f.T, f.S.CreateCohort(f.T.Context(), c), "create cohort "+id)
	return c
}

// Subjects imports one subject per ref into a cohort of the fixture's incident; the ref
// doubles as the person, so refs are distinct people.
func (f *Fixture) Subjects(cohortID string, refs ...string) {
	f.T.Helper()
	rows := make([]enrollment.SubjectRow, len(refs))
	for i, ref := range refs {
		rows[i] = Row(int64(i+2), ref, cohortID, ref)
	}
	f.Import(IncidentID, rows...)
}

// Import imports rows and fails on any row error.
func (f *Fixture) Import(incidentID string, rows ...enrollment.SubjectRow) *enrollment.ImportResult {
	f.T.Helper()
	res, err := f.S.ImportSubjects(f.T.Context(), incidentID, rows)
	must(f.T, err, "import subjects")
	if len(res.Errors) > 0 {
		f.T.Fatalf("import subjects: row errors %+v", res.Errors)
	}
	return res
}

// StartBatch creates a RUNNING batch for a cohort of the fixture's incident at Base.
func (f *Fixture) StartBatch(batchID, cohortID string) *enrollment.Batch {
	f.T.Helper()
	return f.StartBatchIn(IncidentID, batchID, cohortID)
}

// StartBatchIn creates a RUNNING batch for a cohort of any incident at Base.
func (f *Fixture) StartBatchIn(incidentID, batchID, cohortID string) *enrollment.Batch {
	f.T.Helper()
	in, err := f.S.GetIncident(f.T.Context(), incidentID)
	must(f.T, err, "get incident "+incidentID)
	b := &enrollment.Batch{
		ID: batchID, IncidentID: incidentID, CohortID: cohortID, State: enrollment.BatchRunning,
		RedeemBy: in.RedeemBy(Base), Creator: "storetest", CreateTime: Base, UpdateTime: Base,
		WrappedSecret: []byte("wrapped secret of " + batchID), MasterKeyID: "master-1", LookupKeyID: MintKeyID,
	}
	must(f.T, f.S.CreateBatch(f.T.Context(), b), "create batch "+batchID)
	return b
}

// Drain calls IssueNext with limit until it issues nothing and returns how many it issued.
func (f *Fixture) Drain(batchID string, limit int, mint store.MintFunc) int {
	f.T.Helper()
	total := 0
	for range 10000 {
		n, err := f.S.IssueNext(f.T.Context(), batchID, TestLease, limit, Base, mint)
		must(f.T, err, "issue next of "+batchID)
		if n < 0 || n > limit {
			f.T.Fatalf("IssueNext(limit %d) issued %d", limit, n)
		}
		if n == 0 {
			return total
		}
		total += n
	}
	f.T.Fatalf("IssueNext of %s never reported completion", batchID)
	return 0
}

// Issue creates a batch for a cohort of the fixture's incident, issues all of it with Mint
// and finishes it.
func (f *Fixture) Issue(batchID, cohortID string) *enrollment.Batch {
	f.T.Helper()
	return f.IssueIn(IncidentID, batchID, cohortID)
}

// IssueIn is Issue for a cohort of any incident.
func (f *Fixture) IssueIn(incidentID, batchID, cohortID string) *enrollment.Batch {
	f.T.Helper()
	f.StartBatchIn(incidentID, batchID, cohortID)
	f.Drain(batchID, 100, Mint)
	must(f.T, f.S.FinishBatch(f.T.Context(), batchID, enrollment.BatchSucceeded, "", Base), "finish batch")
	b, err := f.S.GetBatch(f.T.Context(), batchID)
	must(f.T, err, "get batch")
	return b
}

// BatchCodes lists every code of a batch.
func (f *Fixture) BatchCodes(batchID string) []store.BatchCode {
	f.T.Helper()
	codes, err := f.S.ListBatchCodes(f.T.Context(), batchID, 0, 100000)
	must(f.T, err, "list batch codes")
	return codes
}

// Codes maps each external ref of a batch to its code HMAC.
func (f *Fixture) Codes(batchID string) map[string][]byte {
	f.T.Helper()
	out := map[string][]byte{}
	for _, c := range f.BatchCodes(batchID) {
		if _, dup := out[c.ExternalRef]; dup {
			f.T.Fatalf("batch %s has two codes for %s", batchID, c.ExternalRef)
		}
		out[c.ExternalRef] = c.HMAC
	}
	return out
}

// Redeem redeems a code at now.
func (f *Fixture) Redeem(code []byte, enrollmentID string, now time.Time) *enrollment.Enrollment {
	f.T.Helper()
	e, _, err := f.S.RedeemCode(f.T.Context(), [][]byte{code}, enrollmentID, now)
	must(f.T, err, "redeem into "+enrollmentID)
	return e
}

// Activate activates an enrollment of PartnerID at now.
func (f *Fixture) Activate(enrollmentID, memberID string, now time.Time) *enrollment.Enrollment {
	f.T.Helper()
	e, err := f.S.ActivateEnrollment(f.T.Context(), enrollmentID, PartnerID, memberID, now)
	must(f.T, err, "activate "+enrollmentID)
	return e
}

// Enrollment reads an enrollment without partner scoping.
func (f *Fixture) Enrollment(id string) *enrollment.Enrollment {
	f.T.Helper()
	e, err := f.S.GetEnrollment(f.T.Context(), id, "")
	must(f.T, err, "get enrollment "+id)
	return e
}
