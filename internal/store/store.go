// Package store defines the persistence the enrollment domain needs. Implementations live in
// sub-packages (gormstore for SQLite and PostgreSQL); storetest is the one suite every
// implementation must pass.
//
// Errors: methods return domain errors from package enrollment (ErrNotFound,
// ErrAlreadyExists, ErrFailedPrecondition, ...) where the doc says so; anything else is an
// unexpected storage failure.
package store

import (
	"context"
	"time"

	"github.com/idprotect/enroll/internal/audit"
	"github.com/idprotect/enroll/internal/enrollment"
)

// Store is everything the services persist. Every state change, its counter rows and its
// event are written in one transaction.
type Store interface {
	// Close releases the database.
	Close() error
	// Ping checks the database is reachable (readiness).
	Ping(ctx context.Context) error

	// CreateIncident stores a new incident. ErrAlreadyExists if the id is taken,
	// ErrFailedPrecondition if the partner does not exist.
	CreateIncident(ctx context.Context, in *enrollment.Incident) error
	// GetIncident returns ErrNotFound if absent.
	GetIncident(ctx context.Context, id string) (*enrollment.Incident, error)
	// ListIncidents returns up to limit incidents with id > after, by id.
	ListIncidents(ctx context.Context, after string, limit int) ([]*enrollment.Incident, error)

	// CreateCohort stores a cohort. ErrNotFound if the incident is absent, ErrAlreadyExists
	// if the id is taken.
	CreateCohort(ctx context.Context, c *enrollment.Cohort) error
	// GetCohort returns ErrNotFound if absent.
	GetCohort(ctx context.Context, incidentID, cohortID string) (*enrollment.Cohort, error)
	// ListCohorts returns up to limit cohorts of the incident with id > after, by id.
	ListCohorts(ctx context.Context, incidentID, after string, limit int) ([]*enrollment.Cohort, error)

	// CreatePartner stores a partner. ErrAlreadyExists if the id is taken.
	CreatePartner(ctx context.Context, p *enrollment.Partner) error
	// GetPartner returns ErrNotFound if absent.
	GetPartner(ctx context.Context, id string) (*enrollment.Partner, error)

	// CreateClient stores a client. ErrAlreadyExists if the id is taken.
	CreateClient(ctx context.Context, c *enrollment.Client) error
	// GetClient returns ErrNotFound if absent.
	GetClient(ctx context.Context, id string) (*enrollment.Client, error)
	// UpsertClient creates or replaces a client (the bootstrap admin from config).
	UpsertClient(ctx context.Context, c *enrollment.Client) error

	// ImportSubjects adds subjects to an incident. A row whose external_ref exists with the
	// same identity key and cohort is unchanged; one whose identity key matches an existing
	// subject in another cohort adds a membership; one whose external_ref exists with a
	// different identity key is rejected. Unknown cohorts are rejected per row.
	ImportSubjects(ctx context.Context, incidentID string, rows []enrollment.SubjectRow) (*enrollment.ImportResult, error)

	// CreateBatch stores a RUNNING batch and fixes its total: the members of the cohort that
	// have no code yet.
	CreateBatch(ctx context.Context, b *enrollment.Batch) error
	// GetBatch returns ErrNotFound if absent.
	GetBatch(ctx context.Context, id string) (*enrollment.Batch, error)
	// ListBatches returns up to limit batches, of incidentID if non-empty, newest first, with
	// id < before (all if before is empty). Batch ids sort by creation time.
	ListBatches(ctx context.Context, incidentID, before string, limit int) ([]*enrollment.Batch, error)
	// NextRunnableBatch returns the oldest RUNNING batch whose lease is free, expired at now,
	// or held by owner; ErrNotFound if there is none. It is a hint: IssueNext takes the lease.
	NextRunnableBatch(ctx context.Context, owner string, now time.Time) (*enrollment.Batch, error)
	// IssueNext issues codes to up to limit members of the batch's cohort that have none, in
	// subject order, in one transaction with the batch progress, the counters and the lease:
	// it takes or extends the batch lease for lease.Owner until lease.Until, and fails with
	// ErrFailedPrecondition if another owner holds an unexpired lease. mint derives the code
	// HMAC for (subject, attempt); on an HMAC collision the store retries with the next attempt.
	// It returns how many it issued; 0 means the batch has nothing left to issue.
	IssueNext(ctx context.Context, batchID string, lease Lease, limit int, now time.Time, mint MintFunc) (int, error)
	// FinishBatch records the final state of a batch and releases its lease.
	FinishBatch(ctx context.Context, batchID string, state enrollment.BatchState, errMsg string, now time.Time) error
	// ListBatchCodes returns up to limit codes of the batch with id > afterID, by id, with the
	// subject's external reference.
	ListBatchCodes(ctx context.Context, batchID string, afterID int64, limit int) ([]BatchCode, error)
	// PurgeBatchSecret destroys the batch's wrapped secret. ErrNotFound if absent.
	PurgeBatchSecret(ctx context.Context, batchID string, now time.Time) (*enrollment.Batch, error)

	// LookupCode finds a code by any of its candidate HMACs (one per live lookup key).
	// ErrNotFound if none matches.
	LookupCode(ctx context.Context, hmacs [][]byte) (*enrollment.CodeView, error)
	// RedeemCode atomically claims an ISSUED code and creates its PENDING enrollment.
	// Exactly one of many concurrent callers wins; the others get ErrAlreadyExists.
	// ErrNotFound if no code matches; ErrFailedPrecondition if expired or revoked.
	RedeemCode(ctx context.Context, hmacs [][]byte, enrollmentID string, now time.Time) (*enrollment.Enrollment, *enrollment.CodeView, error)
	// RevokeCode revokes the live code of a subject. ErrNotFound if the subject or its code
	// is absent, ErrFailedPrecondition if the code is not ISSUED.
	RevokeCode(ctx context.Context, incidentID, externalRef, reason string, now time.Time) (*enrollment.Code, error)

	// GetEnrollment returns ErrNotFound if absent or if partnerID is non-empty and differs.
	GetEnrollment(ctx context.Context, id, partnerID string) (*enrollment.Enrollment, error)
	// ListEnrollments returns up to limit enrollments of the partner with id > after, by id;
	// state filters on the stored state when non-empty.
	ListEnrollments(ctx context.Context, partnerID, after string, state enrollment.EnrollmentState, limit int) ([]*enrollment.Enrollment, error)
	// ActivateEnrollment moves a PENDING enrollment of the partner to ACTIVE, binding the
	// member id. ErrNotFound for other partners' enrollments, ErrFailedPrecondition if not
	// activatable, ErrAlreadyExists if the member id is bound to another enrollment.
	ActivateEnrollment(ctx context.Context, id, partnerID, memberID string, now time.Time) (*enrollment.Enrollment, error)
	// CancelEnrollment moves a PENDING or ACTIVE enrollment of the partner to CANCELLED.
	CancelEnrollment(ctx context.Context, id, partnerID, reason string, now time.Time) (*enrollment.Enrollment, error)

	// ReissueCode revokes a subject's ISSUED code as superseded and issues a new one in the
	// same transaction, as the only code of batch b (stored SUCCEEDED with total 1). mint
	// derives the new code's HMAC as for any batch. ErrNotFound if the subject is unknown,
	// ErrFailedPrecondition if its code is redeemed.
	ReissueCode(ctx context.Context, incidentID, externalRef, reason string, b *enrollment.Batch, now time.Time, mint MintFunc) (*enrollment.Batch, error)
	// RecordResendRequest records a lost-code request for whoever has identityKey (in any
	// incident, with a code not yet redeemed), or an unmatched request otherwise; the caller
	// cannot tell which, and both cost the same.
	RecordResendRequest(ctx context.Context, identityKey []byte, now time.Time) error

	// ListPartnerEvents returns up to limit events of a partner with sequence > after.
	ListPartnerEvents(ctx context.Context, partnerID string, after int64, limit int) ([]enrollment.Event, error)

	// ClaimLease takes or renews a named lease (the sweeper's) for owner until until; false if
	// another owner holds it unexpired at now.
	ClaimLease(ctx context.Context, name, owner string, now, until time.Time) (bool, error)
	// ReleaseLease gives a lease up.
	ReleaseLease(ctx context.Context, name, owner string) error
	// SweepCodes expires up to limit ISSUED codes past redeem-by, with summarised events.
	SweepCodes(ctx context.Context, now time.Time, limit int) (int, error)
	// SweepEnrollments lapses PENDING enrollments past their activation deadline and expires
	// ACTIVE ones past coverage end, up to limit, one event each.
	SweepEnrollments(ctx context.Context, now time.Time, limit int) (int, error)
	// SweepExpiring emits enrollment.expiring once per ACTIVE enrollment ending within window.
	SweepExpiring(ctx context.Context, now time.Time, window time.Duration, limit int) (int, error)

	// ReserveIdempotencyKey claims a request id for a call, or returns the record already there.
	ReserveIdempotencyKey(ctx context.Context, rec IdempotencyRecord, staleBefore time.Time) (existing *IdempotencyRecord, reserved bool, err error)
	// CompleteIdempotencyKey stores the outcome of a reserved call.
	CompleteIdempotencyKey(ctx context.Context, scope, key string, response []byte, code int, message string) error
	// ReleaseIdempotencyKey forgets a pending claim so a retry runs the call again.
	ReleaseIdempotencyKey(ctx context.Context, scope, key string) error
	// PurgeIdempotencyKeys deletes up to limit expired records.
	PurgeIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int, error)

	// AppendAudit records a call in the audit chain on its own (a failed call, or one that
	// changed nothing). Calls that change something are recorded by the transaction that
	// changes it, through the audit.Intent in the context.
	AppendAudit(ctx context.Context, in *audit.Intent, outcome string) error
	// ListAudit returns up to limit audit entries with seq > after, in order.
	ListAudit(ctx context.Context, after int64, limit int) ([]audit.Entry, error)

	// StateCounters returns only the state counters of an incident (no daily rows): what
	// GetCounts reads, a handful of rows per cohort however long the incident runs.
	StateCounters(ctx context.Context, incidentID string) ([]enrollment.CounterRow, error)
	// Counters returns the counter rows of an incident.
	Counters(ctx context.Context, incidentID string) ([]enrollment.CounterRow, error)
	// Recount recomputes the counter rows of an incident from the code and enrollment rows.
	Recount(ctx context.Context, incidentID string) ([]enrollment.CounterRow, error)
	// RepairCounters replaces the counter rows of an incident with a recount.
	RepairCounters(ctx context.Context, incidentID string) error
	// CountBillable counts a partner's enrollments ACTIVE at some instant of [start, end).
	CountBillable(ctx context.Context, partnerID string, start, end time.Time) (int64, error)
	// ListBillable pages through them by enrollment id (id > after).
	ListBillable(ctx context.Context, partnerID string, start, end time.Time, after string, limit int) ([]BillableEnrollment, error)

	// CreateReconcileRun registers an invoice reconciliation before its lines are staged, so
	// that the lines of a run that never finished (a crash) can be found and purged.
	// ErrAlreadyExists if the id is taken.
	CreateReconcileRun(ctx context.Context, runID string, now time.Time) error
	// StageInvoiceLines stages a chunk of a run's invoice lines, each resolved to the
	// enrollment it names: by enrollment id, or by member id among partnerID's enrollments
	// first and then other partners'. Line numbers must be unique within the run
	// (ErrAlreadyExists otherwise). The chunk commits on its own.
	StageInvoiceLines(ctx context.Context, runID, partnerID string, lines []InvoiceLine) error
	// CountReconcileRun counts the run's staged lines by why they are not billable to
	// partnerID in [start, end) (ReasonNone for the matched ones), and the partner's billable
	// enrollments that no line names.
	CountReconcileRun(ctx context.Context, runID, partnerID string, start, end time.Time) (*ReconcileCounts, error)
	// ListBilledNotBillable returns up to limit staged lines of the run with line > afterLine,
	// by line, that are not billable to partnerID in [start, end), with the reason.
	ListBilledNotBillable(ctx context.Context, runID, partnerID string, start, end time.Time, afterLine int64, limit int) ([]BilledNotBillable, error)
	// ListBillableNotBilled returns up to limit of partnerID's enrollments billable in
	// [start, end) with id > after, by id, that no staged line of the run names.
	ListBillableNotBilled(ctx context.Context, runID, partnerID string, start, end time.Time, after string, limit int) ([]BillableEnrollment, error)
	// DeleteReconcileRun deletes a run and its staged lines, a chunk per transaction so that a
	// large invoice never holds the SQLite write lock for long. Deleting an absent run is not
	// an error.
	DeleteReconcileRun(ctx context.Context, runID string) error
	// PurgeReconcileRuns deletes, as DeleteReconcileRun, every run created before before (left
	// behind by a crash), and returns how many.
	PurgeReconcileRuns(ctx context.Context, before time.Time) (int, error)
}

// IdempotencyRecord is the remembered outcome of a mutating call, by caller scope and request
// id. RequestHash identifies the request so a reused id with another request is caught.
type IdempotencyRecord struct {
	Scope, Key, Method string
	RequestHash        []byte
	Done               bool
	Response           []byte // serialized google.protobuf.Any, when Done with code OK
	Code               int    // gRPC status code
	Message            string
	CreateTime         time.Time
	ExpireTime         time.Time
}

// Lease is a time-bounded claim on a batch by one worker, so that several replicas can run
// issuance without two of them working on one batch, and a crashed worker's batch is taken
// over once its lease expires.
type Lease struct {
	Owner string
	Until time.Time
}

// MintFunc returns the code HMAC and lookup key id for a subject at an attempt number.
type MintFunc func(subjectID int64, attempt uint32) (hmac []byte, keyID string)

// BatchCode is one row of a batch's mail-house export, without the plaintext (which the caller
// re-derives from the batch secret).
type BatchCode struct {
	CodeID      int64
	SubjectID   int64
	Attempt     uint32
	ExternalRef string
	CohortID    string
	HMAC        []byte
	KeyID       string
	RedeemBy    time.Time
}

// BillableEnrollment is one line of a billable-months export.
type BillableEnrollment struct {
	EnrollmentID string
	MemberID     string
	IncidentID   string
	ActivateTime time.Time
	// EndTime is when the coverage ended or will end (cancellation or coverage end).
	EndTime time.Time
}

// InvoiceLine is one line of a partner's invoice: exactly one of MemberID and EnrollmentID.
type InvoiceLine struct {
	// Line is the line number in the vendor's file.
	Line         int64
	MemberID     string
	EnrollmentID string
}

// NotBillableReason says why an invoice line is not billable.
type NotBillableReason string

// Reasons, in the order they are decided: a repeated line is a duplicate whatever it names.
const (
	// ReasonNone marks a line that is billable (counted in ReconcileCounts only).
	ReasonNone NotBillableReason = ""
	// ReasonDuplicate: an earlier line names the same enrollment (or the same unknown value).
	ReasonDuplicate NotBillableReason = "DUPLICATE"
	// ReasonUnknown: no enrollment has the id or member id.
	ReasonUnknown NotBillableReason = "UNKNOWN"
	// ReasonOtherPartner: the enrollment belongs to another partner.
	ReasonOtherPartner NotBillableReason = "OTHER_PARTNER"
	// ReasonNeverActivated: the enrollment has no activation.
	ReasonNeverActivated NotBillableReason = "NEVER_ACTIVATED"
	// ReasonNotStarted: activated at or after the end of the month.
	ReasonNotStarted NotBillableReason = "NOT_STARTED"
	// ReasonEndedBeforeMonth: cancelled, or coverage ended, at or before its start.
	ReasonEndedBeforeMonth NotBillableReason = "ENDED_BEFORE_MONTH"
)

// BilledNotBillable is an invoice line that is not billable, and why.
type BilledNotBillable struct {
	InvoiceLine
	Reason NotBillableReason
	// ResolvedID is the enrollment the line names, if any.
	ResolvedID string
	// FirstLine is, for a duplicate, the first line naming the same thing.
	FirstLine int64
}

// ReconcileCounts are the exact totals of a reconciliation run.
type ReconcileCounts struct {
	// Lines counts the staged lines by reason; Lines[ReasonNone] are the matched ones, one per
	// billable enrollment named.
	Lines map[NotBillableReason]int64
	// BillableNotBilled counts the billable enrollments no line names.
	BillableNotBilled int64
}
