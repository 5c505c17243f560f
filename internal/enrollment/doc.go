// Package enrollment is the domain of the identity-protection offer: incidents, cohorts,
// subjects, codes and enrollments, their states and the rules that move between them.
//
// It is pure: no I/O and no wall clock. Deadlines are evaluated against an instant the
// caller passes in (from an injected clock), so "status is right when read" holds before any
// sweep has made an expiry durable, and tests drive time without sleeping.
package enrollment
