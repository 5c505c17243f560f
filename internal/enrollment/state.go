package enrollment

import "time"

// CodeState is the lifecycle of a code: ISSUED → REDEEMED | EXPIRED | REVOKED.
type CodeState string

// Code states.
const (
	CodeIssued   CodeState = "ISSUED"
	CodeRedeemed CodeState = "REDEEMED"
	CodeExpired  CodeState = "EXPIRED"
	CodeRevoked  CodeState = "REVOKED"
)

// EnrollmentState is the lifecycle of an enrollment:
// PENDING → ACTIVE → EXPIRED | CANCELLED, and PENDING → LAPSED | CANCELLED.
type EnrollmentState string

// Enrollment states.
const (
	EnrollmentPending   EnrollmentState = "PENDING"
	EnrollmentActive    EnrollmentState = "ACTIVE"
	EnrollmentExpired   EnrollmentState = "EXPIRED"
	EnrollmentCancelled EnrollmentState = "CANCELLED"
	EnrollmentLapsed    EnrollmentState = "LAPSED"
)

// Terminal reports whether no further transition is possible.
func (s EnrollmentState) Terminal() bool {
	return s == EnrollmentExpired || s == EnrollmentCancelled || s == EnrollmentLapsed
}

// StateAt is the code's state at now: a stored ISSUED code whose redeem-by instant has been
// reached reads EXPIRED even if no sweep has recorded it yet. Redeem-by is exclusive: at the
// instant itself the code is expired.
func (c *Code) StateAt(now time.Time) CodeState {
	if c.State == CodeIssued && !now.Before(c.RedeemBy) {
		return CodeExpired
	}
	return c.State
}

// CheckRedeemable returns nil if the code can be redeemed at now, or the error a person
// should see.
func (c *Code) CheckRedeemable(now time.Time) error {
	switch c.StateAt(now) {
	case CodeIssued:
		return nil
	case CodeRedeemed:
		return AlreadyExistsf("this code has already been redeemed; use the status page to see your enrollment")
	case CodeExpired:
		return FailedPreconditionf("this code expired on %s and can no longer be redeemed; request a new code", c.RedeemBy.UTC().Format(time.DateOnly))
	case CodeRevoked:
		return FailedPreconditionf("this code was revoked; if you received a newer letter, use the code in it")
	}
	return FailedPreconditionf("this code cannot be redeemed")
}

// StateAt is the enrollment's state at now: a PENDING enrollment past its activation deadline
// reads LAPSED, an ACTIVE one past coverage end reads EXPIRED, before any sweep.
func (e *Enrollment) StateAt(now time.Time) EnrollmentState {
	switch {
	case e.State == EnrollmentPending && !now.Before(e.ActivationDeadline):
		return EnrollmentLapsed
	case e.State == EnrollmentActive && !now.Before(e.CoverageEnd):
		return EnrollmentExpired
	}
	return e.State
}

// CheckActivatable returns nil if the partner may activate the enrollment at now.
func (e *Enrollment) CheckActivatable(now time.Time) error {
	switch s := e.StateAt(now); s {
	case EnrollmentPending:
		return nil
	case EnrollmentLapsed:
		return FailedPreconditionf("enrollment lapsed: it was not activated by %s", e.ActivationDeadline.UTC().Format(time.RFC3339))
	default:
		return FailedPreconditionf("enrollment is %s; only PENDING enrollments can be activated", s)
	}
}

// CheckCancellable returns nil if the enrollment can be cancelled at now.
func (e *Enrollment) CheckCancellable(now time.Time) error {
	switch s := e.StateAt(now); s {
	case EnrollmentPending, EnrollmentActive:
		return nil
	default:
		return FailedPreconditionf("enrollment is %s; only PENDING or ACTIVE enrollments can be cancelled", s)
	}
}

// AddMonthsClamped adds months calendar months to t, keeping the time of day, and clamps the
// day to the last day of the target month (Jan 31 + 1 month = Feb 28 or 29). time.AddDate
// would normalise Feb 31 to Mar 3, which would give members days they were not sold.
func AddMonthsClamped(t time.Time, months int) time.Time {
	t = t.UTC()
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(months), 1, 0, 0, 0, 0, time.UTC)
	last := first.AddDate(0, 1, -1).Day()
	if d > last {
		d = last
	}
	hh, mm, ss := t.Clock()
	return time.Date(first.Year(), first.Month(), d, hh, mm, ss, t.Nanosecond(), time.UTC)
}
