package enrollment

import "time"

// Incident is one breach and its offer terms.
type Incident struct {
	ID                   string
	Title                string
	DiscloseTime         time.Time
	CoverageMonths       int
	RedeemWindowDays     int
	ActivationWindowDays int
	PartnerID            string
	CreateTime           time.Time
}

// Offer defaults from the product spec.
const (
	DefaultCoverageMonths       = 24
	DefaultRedeemWindowDays     = 180
	DefaultActivationWindowDays = 30
)

// ApplyDefaults fills unset offer terms with the defaults.
func (i *Incident) ApplyDefaults() {
	if i.CoverageMonths == 0 {
		i.CoverageMonths = DefaultCoverageMonths
	}
	if i.RedeemWindowDays == 0 {
		i.RedeemWindowDays = DefaultRedeemWindowDays
	}
	if i.ActivationWindowDays == 0 {
		i.ActivationWindowDays = DefaultActivationWindowDays
	}
}

// RedeemBy is the redeem-by instant of a code issued at t.
func (i *Incident) RedeemBy(issued time.Time) time.Time {
	return issued.UTC().AddDate(0, 0, i.RedeemWindowDays)
}

// Cohort is a group of affected people with the same exposed data.
type Cohort struct {
	IncidentID         string
	ID                 string
	DisplayName        string
	ExposedData        []string
	RecommendedActions []string
	OfferApplies       bool
	SubjectCount       int64
}

// Partner is a monitoring vendor.
type Partner struct {
	ID            string
	DisplayName   string
	EnrollmentURI string
}

// Client is an API client; only the hash of its secret is kept.
type Client struct {
	ID          string
	Role        string
	PartnerID   string
	DisplayName string
	SecretHash  string
	CreateTime  time.Time
}

// SubjectRow is one eligible person as imported: the identity fields are already reduced to
// IdentityKey (a keyed HMAC) before a row reaches the store.
type SubjectRow struct {
	Line        int64
	ExternalRef string
	CohortID    string
	IdentityKey []byte
}

// ImportError names a rejected source line.
type ImportError struct {
	Line   int64
	Reason string
}

// ImportResult summarises an import call.
type ImportResult struct {
	Created          int64
	MembershipsAdded int64
	Unchanged        int64
	Errors           []ImportError
}

// Batch is one issuance run.
type Batch struct {
	ID            string
	IncidentID    string
	CohortID      string
	State         BatchState
	Total         int64
	Issued        int64
	RedeemBy      time.Time
	Creator       string
	CreateTime    time.Time
	UpdateTime    time.Time
	WrappedSecret []byte // nil once purged
	MasterKeyID   string
	LookupKeyID   string
	Error         string
	LeaseOwner    string
	LeaseUntil    time.Time
}

// IssueRate is codes issued per second from creation to the last update.
func (b *Batch) IssueRate() float64 {
	secs := b.UpdateTime.Sub(b.CreateTime).Seconds()
	if secs <= 0 || b.Issued == 0 {
		return 0
	}
	return float64(b.Issued) / secs
}

// BatchState is the progress of a batch.
type BatchState string

// Batch states.
const (
	BatchRunning   BatchState = "RUNNING"
	BatchSucceeded BatchState = "SUCCEEDED"
	BatchFailed    BatchState = "FAILED"
)

// Code is a stored code: never the plaintext, only its keyed HMAC.
type Code struct {
	ID           int64
	IncidentID   string
	CohortID     string
	SubjectID    int64
	BatchID      string
	KeyID        string
	HMAC         []byte
	Attempt      uint32
	State        CodeState
	IssueTime    time.Time
	RedeemBy     time.Time
	RedeemTime   time.Time
	RevokeTime   time.Time
	RevokeReason string
}

// CodeView is what a code lookup returns: the code with the context needed to describe it.
type CodeView struct {
	Code         Code
	ExternalRef  string
	Incident     Incident
	Cohorts      []Cohort // every cohort the subject belongs to
	Partner      Partner
	EnrollmentID string // set once redeemed
}

// Enrollment is created by redeeming a code.
type Enrollment struct {
	ID                 string
	IncidentID         string
	CohortID           string
	SubjectID          int64
	CodeID             int64
	PartnerID          string
	State              EnrollmentState
	MemberID           string
	RedeemTime         time.Time
	ActivationDeadline time.Time
	ActivateTime       time.Time
	CoverageEnd        time.Time
	CancelTime         time.Time
	CancelReason       string
}

// CounterRow is one counter. With Day empty: how many codes or enrollments of a cohort are
// in a state now. With Day set (YYYY-MM-DD, UTC): how many entered the state that day.
type CounterRow struct {
	IncidentID string
	CohortID   string
	Kind       CounterKind
	State      string
	Day        string
	N          int64
}

// CounterKind says what a counter counts.
type CounterKind string

// Counter kinds.
const (
	CountCodes       CounterKind = "code"
	CountEnrollments CounterKind = "enrollment"
)

// Event is one entry of the change log.
type Event struct {
	Sequence   int64 // the partner's gap-free sequence number
	Type       string
	Resource   string
	IncidentID string
	PartnerID  string
	Count      int64
	Time       time.Time
}
