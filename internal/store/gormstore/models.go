package gormstore

import "time"

// One struct per table. Only this package knows them; the domain sees enrollment types.

type incidentRow struct {
	ID                   string `gorm:"primaryKey;size:63"`
	Title                string `gorm:"not null"`
	DiscloseTime         *time.Time
	CoverageMonths       int       `gorm:"not null"`
	RedeemWindowDays     int       `gorm:"not null"`
	ActivationWindowDays int       `gorm:"not null"`
	PartnerID            string    `gorm:"size:63;not null;index"`
	CreateTime           time.Time `gorm:"not null"`
}

func (incidentRow) TableName() string { return "incidents" }

type cohortRow struct {
	IncidentID         string `gorm:"primaryKey;size:63"`
	ID                 string `gorm:"primaryKey;size:63"`
	DisplayName        string `gorm:"not null"`
	ExposedData        string `gorm:"not null"` // comma-separated enum names
	RecommendedActions string `gorm:"not null"` // JSON array
	OfferApplies       bool   `gorm:"not null"`
	SubjectCount       int64  `gorm:"not null;default:0"`
}

func (cohortRow) TableName() string { return "cohorts" }

type partnerRow struct {
	ID            string `gorm:"primaryKey;size:63"`
	DisplayName   string `gorm:"not null"`
	EnrollmentURI string `gorm:"not null"`
}

func (partnerRow) TableName() string { return "partners" }

type clientRow struct {
	ID          string `gorm:"primaryKey;size:63"`
	Role        string `gorm:"size:16;not null"`
	PartnerID   *string
	DisplayName string    `gorm:"not null"`
	SecretHash  string    `gorm:"not null"`
	CreateTime  time.Time `gorm:"not null"`
}

func (clientRow) TableName() string { return "clients" }

// subjectRow stores no identifier beyond the company's own reference and the keyed HMAC of
// the identity tuple.
type subjectRow struct {
	ID          int64  `gorm:"primaryKey;autoIncrement"`
	IncidentID  string `gorm:"size:63;not null;uniqueIndex:subjects_incident_ref,priority:1;index:subjects_identity,priority:1"`
	ExternalRef string `gorm:"size:64;not null;uniqueIndex:subjects_incident_ref,priority:2"`
	IdentityKey []byte `gorm:"not null;index:subjects_identity,priority:2"`
	CohortID    string `gorm:"size:63;not null"` // the cohort the person was first imported in
}

func (subjectRow) TableName() string { return "subjects" }

type membershipRow struct {
	IncidentID string `gorm:"size:63;not null;index:memberships_scan,priority:1"`
	CohortID   string `gorm:"primaryKey;size:63;index:memberships_scan,priority:2"`
	// memberships_subject serves "which cohorts is this person in" (every code look-up and
	// redemption, and import reruns): the primary key leads with cohort_id, so without it that
	// question scans the whole table.
	SubjectID int64 `gorm:"primaryKey;autoIncrement:false;index:memberships_scan,priority:3;index:memberships_subject"`
}

func (membershipRow) TableName() string { return "subject_cohorts" }

type batchRow struct {
	ID            string    `gorm:"primaryKey;size:40"`
	IncidentID    string    `gorm:"size:63;not null;index"`
	CohortID      string    `gorm:"size:63;not null"`
	State         string    `gorm:"size:16;not null"`
	Total         int64     `gorm:"not null"`
	Issued        int64     `gorm:"not null"`
	ScanCursor    int64     `gorm:"not null"` // last subject id handled: resumes without rescanning
	RedeemBy      time.Time `gorm:"not null"`
	Creator       string    `gorm:"not null"`
	CreateTime    time.Time `gorm:"not null"`
	UpdateTime    time.Time `gorm:"not null"`
	WrappedSecret []byte    // NULL once purged
	MasterKeyID   string    `gorm:"not null"`
	LookupKeyID   string    `gorm:"not null"`
	Error         string    `gorm:"not null"`
	LeaseOwner    string    `gorm:"size:64;not null;default:''"`
	LeaseUntil    time.Time `gorm:"not null"`
}

func (batchRow) TableName() string { return "batches" }

// codeRow never holds a plaintext code. LiveSubjectID is the subject id while the code is
// ISSUED or REDEEMED and NULL otherwise; its unique index makes "one live code per person"
// a database invariant rather than a convention.
type codeRow struct {
	ID            int64     `gorm:"primaryKey;autoIncrement;index:codes_batch,priority:2"`
	CodeHMAC      []byte    `gorm:"column:code_hmac;not null;uniqueIndex"`
	KeyID         string    `gorm:"size:32;not null"`
	IncidentID    string    `gorm:"size:63;not null"`
	CohortID      string    `gorm:"size:63;not null"`
	SubjectID     int64     `gorm:"not null;index"`
	LiveSubjectID *int64    `gorm:"uniqueIndex"`
	BatchID       string    `gorm:"size:40;not null;index:codes_batch,priority:1"`
	Attempt       uint32    `gorm:"not null"`
	State         string    `gorm:"size:16;not null"`
	IssueTime     time.Time `gorm:"not null"`
	RedeemBy      time.Time `gorm:"not null"`
	RedeemTime    *time.Time
	RevokeTime    *time.Time
	RevokeReason  string `gorm:"not null"`
}

func (codeRow) TableName() string { return "codes" }

// enrollmentRow: LiveSubjectID is set while PENDING or ACTIVE so that a subject has at most
// one non-terminal enrollment, enforced by a unique index.
type enrollmentRow struct {
	ID                 string    `gorm:"primaryKey;size:40"`
	IncidentID         string    `gorm:"size:63;not null"`
	CohortID           string    `gorm:"size:63;not null"`
	SubjectID          int64     `gorm:"not null"`
	CodeID             int64     `gorm:"not null;uniqueIndex"`
	PartnerID          string    `gorm:"size:63;not null;index:enrollments_partner,priority:1;uniqueIndex:enrollments_member,priority:1"`
	MemberID           *string   `gorm:"size:128;uniqueIndex:enrollments_member,priority:2"`
	LiveSubjectID      *int64    `gorm:"uniqueIndex"`
	State              string    `gorm:"size:16;not null"`
	RedeemTime         time.Time `gorm:"not null"`
	ActivationDeadline time.Time `gorm:"not null"`
	ActivateTime       *time.Time
	CoverageEnd        *time.Time
	CancelTime         *time.Time
	CancelReason       string `gorm:"not null"`
	// ExpiringNotified is set once the enrollment.expiring notice has gone out, so that
	// SweepExpiring sends it once however often it runs.
	ExpiringNotified bool `gorm:"not null;default:false"`
}

func (enrollmentRow) TableName() string { return "enrollments" }

// eventRow is the append-only change log; bulk transitions are one row with a count.
type eventRow struct {
	Seq        int64  `gorm:"primaryKey;autoIncrement"`
	Type       string `gorm:"size:64;not null"`
	Resource   string `gorm:"not null"`
	IncidentID string `gorm:"size:63;not null"`
	PartnerID  string `gorm:"size:63;not null;index;uniqueIndex:events_partner_seq,priority:1"`
	// PartnerSeq numbers the partner's events 1, 2, 3... without gaps (NULL for events of
	// no partner), so a change feed can resume exactly.
	PartnerSeq *int64    `gorm:"uniqueIndex:events_partner_seq,priority:2"`
	Count      int64     `gorm:"not null"`
	Time       time.Time `gorm:"not null"`
}

func (eventRow) TableName() string { return "events" }

// counterRow holds how many codes or enrollments of a cohort are in a state, changed in the
// same transaction as the rows it counts.
type counterRow struct {
	IncidentID string `gorm:"primaryKey;size:63"`
	CohortID   string `gorm:"primaryKey;size:63"`
	Kind       string `gorm:"primaryKey;size:16"`
	State      string `gorm:"primaryKey;size:16"`
	N          int64  `gorm:"not null"`
}

func (counterRow) TableName() string { return "counters" }

// dailyCounterRow holds how many codes or enrollments of a cohort entered a state on a UTC
// day, changed in the same transaction as the rows it counts.
type dailyCounterRow struct {
	IncidentID string `gorm:"primaryKey;size:63"`
	CohortID   string `gorm:"primaryKey;size:63"`
	Kind       string `gorm:"primaryKey;size:16"`
	State      string `gorm:"primaryKey;size:16"`
	Day        string `gorm:"primaryKey;size:10"`
	N          int64  `gorm:"not null"`
}

func (dailyCounterRow) TableName() string { return "daily_counters" }

type migrationRow struct {
	Name      string    `gorm:"primaryKey;size:128"`
	AppliedAt time.Time `gorm:"not null"`
}

func (migrationRow) TableName() string { return "schema_migrations" }

// partnerSeqRow holds the last event sequence number of a partner.
type partnerSeqRow struct {
	PartnerID string `gorm:"primaryKey;size:63"`
	LastSeq   int64  `gorm:"not null"`
}

func (partnerSeqRow) TableName() string { return "partner_sequences" }

// leaseRow is a named, time-bounded claim (the sweeper's), so that of several replicas one
// does the work and another takes over if it dies.
type leaseRow struct {
	Name  string    `gorm:"primaryKey;size:64"`
	Owner string    `gorm:"size:128;not null"`
	Until time.Time `gorm:"not null"`
}

func (leaseRow) TableName() string { return "leases" }

// idempotencyRow remembers the outcome of a mutating call by its request id.
type idempotencyRow struct {
	Scope       string    `gorm:"primaryKey;size:128"`
	Key         string    `gorm:"primaryKey;size:128"`
	Method      string    `gorm:"size:128;not null"`
	RequestHash []byte    `gorm:"not null"`
	Done        bool      `gorm:"not null"`
	Response    []byte    // google.protobuf.Any of the response, when Done and OK
	Code        int       `gorm:"not null"`
	Message     string    `gorm:"not null"`
	CreateTime  time.Time `gorm:"not null"`
	ExpireTime  time.Time `gorm:"not null;index"`
}

func (idempotencyRow) TableName() string { return "idempotency_keys" }

// resendRow is a lost-code request for the mail house. SubjectID is NULL when the details
// matched nobody: the row is written either way so both answers cost the same.
type resendRow struct {
	ID          int64     `gorm:"primaryKey;autoIncrement"`
	SubjectID   *int64    `gorm:"index"`
	RequestTime time.Time `gorm:"not null"`
}

func (resendRow) TableName() string { return "resend_requests" }

// auditRow is one link of the audit chain. Seq is assigned from audit_head under its row
// lock, so the chain has no gaps and no forks.
type auditRow struct {
	Seq       int64     `gorm:"primaryKey;autoIncrement:false"`
	Time      time.Time `gorm:"not null"`
	Actor     string    `gorm:"size:128;not null"`
	Role      string    `gorm:"size:16;not null"`
	Action    string    `gorm:"size:128;not null"`
	Resource  string    `gorm:"not null"`
	RequestID string    `gorm:"size:128;not null"`
	Outcome   string    `gorm:"size:32;not null"`
	PrevHash  string    `gorm:"size:64;not null"`
	Hash      string    `gorm:"size:64;not null"`
}

func (auditRow) TableName() string { return "audit_entries" }

// auditHeadRow is the single row holding the chain's last sequence number and hash.
type auditHeadRow struct {
	ID   int    `gorm:"primaryKey;autoIncrement:false"`
	Seq  int64  `gorm:"not null"`
	Hash string `gorm:"size:64;not null"`
}

func (auditHeadRow) TableName() string { return "audit_head" }
