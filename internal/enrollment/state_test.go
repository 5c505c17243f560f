package enrollment

import (
	"errors"
	"testing"
	"time"
)

func TestAddMonthsClamped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		start  string
		months int
		want   string
	}{
		{"jan 31 plus 24 months", "2024-01-31T10:00:00Z", 24, "2026-01-31T10:00:00Z"},
		{"leap day plus 24 months clamps to feb 28", "2024-02-29T08:30:00Z", 24, "2026-02-28T08:30:00Z"},
		{"leap day plus 48 months stays leap day", "2024-02-29T08:30:00Z", 48, "2028-02-29T08:30:00Z"},
		{"jan 31 plus 1 month clamps to feb 29 in leap year", "2024-01-31T23:59:59Z", 1, "2024-02-29T23:59:59Z"},
		{"jan 31 plus 1 month clamps to feb 28", "2025-01-31T00:00:00Z", 1, "2025-02-28T00:00:00Z"},
		{"aug 31 plus 1 month clamps to sep 30", "2025-08-31T12:00:00Z", 1, "2025-09-30T12:00:00Z"},
		{"mid month unchanged day", "2025-03-15T06:07:08Z", 24, "2027-03-15T06:07:08Z"},
		{"year rollover", "2025-12-31T00:00:00Z", 2, "2026-02-28T00:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start, _ := time.Parse(time.RFC3339, tc.start)
			got := AddMonthsClamped(start, tc.months).Format(time.RFC3339)
			if got != tc.want {
				t.Fatalf("AddMonthsClamped(%s, %d) = %s, want %s", tc.start, tc.months, got, tc.want)
			}
		})
	}
}

func TestCodeStateAtRedeemBy(t *testing.T) {
	t.Parallel()
	redeemBy := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	c := &Code{State: CodeIssued, RedeemBy: redeemBy}
	if got := c.StateAt(redeemBy.Add(-time.Second)); got != CodeIssued {
		t.Errorf("one second before redeem-by: %s, want ISSUED", got)
	}
	if got := c.StateAt(redeemBy); got != CodeExpired {
		t.Errorf("at redeem-by: %s, want EXPIRED", got)
	}
	if err := c.CheckRedeemable(redeemBy); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("redeem at redeem-by: %v, want failed precondition", err)
	}
	if err := c.CheckRedeemable(redeemBy.Add(-time.Second)); err != nil {
		t.Errorf("redeem before redeem-by: %v", err)
	}
	redeemed := &Code{State: CodeRedeemed, RedeemBy: redeemBy}
	if err := redeemed.CheckRedeemable(redeemBy.Add(time.Hour)); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("redeemed code: %v, want already exists even past redeem-by", err)
	}
	revoked := &Code{State: CodeRevoked, RedeemBy: redeemBy}
	if err := revoked.CheckRedeemable(redeemBy.Add(-time.Hour)); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("revoked code: %v, want failed precondition", err)
	}
}

func TestEnrollmentStateAt(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		e    Enrollment
		now  time.Time
		want EnrollmentState
	}{
		{"pending before deadline", Enrollment{State: EnrollmentPending, ActivationDeadline: deadline}, deadline.Add(-time.Second), EnrollmentPending},
		{"pending at deadline lapses", Enrollment{State: EnrollmentPending, ActivationDeadline: deadline}, deadline, EnrollmentLapsed},
		{"active before end", Enrollment{State: EnrollmentActive, CoverageEnd: end}, end.Add(-time.Second), EnrollmentActive},
		{"active at end expires", Enrollment{State: EnrollmentActive, CoverageEnd: end}, end, EnrollmentExpired},
		{"cancelled stays cancelled", Enrollment{State: EnrollmentCancelled, CoverageEnd: end}, end.Add(time.Hour), EnrollmentCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.e.StateAt(tc.now); got != tc.want {
				t.Fatalf("StateAt = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCheckActivatableAndCancellable(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pending := &Enrollment{State: EnrollmentPending, ActivationDeadline: deadline}
	if err := pending.CheckActivatable(deadline.Add(-time.Minute)); err != nil {
		t.Fatalf("pending activatable: %v", err)
	}
	if err := pending.CheckActivatable(deadline); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("lapsed activatable: %v", err)
	}
	if err := pending.CheckCancellable(deadline); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("lapsed cancellable: %v", err)
	}
	active := &Enrollment{State: EnrollmentActive, CoverageEnd: deadline}
	if err := active.CheckActivatable(deadline.Add(-time.Hour)); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("active activatable: %v", err)
	}
	if err := active.CheckCancellable(deadline.Add(-time.Hour)); err != nil {
		t.Fatalf("active cancellable: %v", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"breach-2026", "abc", "a1-b2"} {
		if err := ValidateResourceID("incident_id", ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", "1abc", "Abc", "a_b", "a/b"} {
		if err := ValidateResourceID("incident_id", bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := ValidateExternalRef("CUST-000001"); err != nil {
		t.Error(err)
	}
	if err := ValidateExternalRef("a/b"); err == nil {
		t.Error("slash accepted in external ref")
	}
	if err := ValidateMemberID("M-123"); err != nil {
		t.Error(err)
	}
	if err := ValidateMemberID("a\x00b"); err == nil {
		t.Error("control character accepted in member id")
	}
}
