// Package storetest is the one behavioural suite every store.Store implementation runs. A
// backend's test calls Run with a function that opens a fresh, empty store; every subtest
// opens its own, so subtests run in parallel and never see each other's rows.
//
// The suite checks the contract written on store.Store: the domain error kinds each method
// returns, paging, issuance and redemption invariants (one code per person, one winner per
// code), and that the counter rows always equal a full recount.
package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/store"
)

// OpenFunc opens a fresh, empty, migrated store owned by t (closed when t ends).
type OpenFunc func(t testing.TB) store.Store

// Run runs the whole suite against the backend that open creates.
func Run(t *testing.T, open OpenFunc) {
	t.Helper()
	suites := []struct {
		name  string
		tests map[string]func(t *testing.T, open OpenFunc)
	}{
		{"Incidents", incidentTests},
		{"Cohorts", cohortTests},
		{"PartnersAndClients", partnerClientTests},
		{"ImportSubjects", importTests},
		{"Issuance", issuanceTests},
		{"Leases", leaseTests},
		{"Codes", codeTests},
		{"Enrollments", enrollmentTests},
		{"Counters", counterTests},
		{"PartnerFeed", feedTests},
		{"Reissue", reissueTests},
		{"Idempotency", idempotencyTests},
		{"NamedLeases", namedLeaseTests},
		{"Sweeps", sweepTests},
		{"SweepRaces", sweepRaceTests},
	}
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			names := make([]string, 0, len(s.tests))
			for name := range s.tests {
				names = append(names, name)
			}
			slices.Sort(names)
			for _, name := range names {
				test := s.tests[name]
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					test(t, open)
				})
			}
		})
	}
}

// wantKind fails t unless err wraps kind.
func wantKind(t testing.TB, err, kind error, what string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: error = %v, want %v", what, err, kind)
	}
}

// must fails t on an unexpected error.
func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantTime fails t unless got and want are the same instant.
func wantTime(t testing.TB, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %s, want %s", what, got.UTC().Format(time.RFC3339Nano), want.UTC().Format(time.RFC3339Nano))
	}
}

// ids renders a list of ids for failure messages.
func ids[T any](xs []T, id func(T) string) string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return "[" + strings.Join(out, " ") + "]"
}
