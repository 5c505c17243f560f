package auth

import (
	"context"
	"errors"
	"fmt"
)

// Role is the coarse permission level of a machine client. Role names are
// case-sensitive because they are compared verbatim in tokens and policies.
type Role string

// The roles a client can hold.
const (
	// RoleAdmin is held by the operator's own back-office tooling.
	RoleAdmin Role = "ADMIN"
	// RolePartner is held by a partner's integration; it is always scoped to
	// exactly one partner.
	RolePartner Role = "PARTNER"
	// RoleFinance is held by billing and reconciliation jobs.
	RoleFinance Role = "FINANCE"
)

// ParseRole returns the Role named by s. It accepts only the exact names of
// the defined roles, so that a typo in configuration or a forged claim can
// never map to some role by accident.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RolePartner, RoleFinance:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want ADMIN, PARTNER or FINANCE)", s)
}

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool {
	_, err := ParseRole(string(r))
	return err == nil
}

// String returns the role name.
func (r Role) String() string { return string(r) }

// Principal is the authenticated caller attached to a request context.
type Principal struct {
	// ClientID is the machine client's id (the token's "sub" claim).
	ClientID string
	// Role is what the client may do.
	Role Role
	// PartnerID names the partner a RolePartner client acts for. It is set if
	// and only if Role is RolePartner, so handlers can rely on it for
	// tenant scoping.
	PartnerID string
	// TokenID is the "jti" of the token the caller presented; it is useful for
	// audit logs and revocation.
	TokenID string
}

// Validate checks the invariants every principal must satisfy: a client id, a
// known role, and a partner id exactly when the role is RolePartner.
func (p Principal) Validate() error {
	if p.ClientID == "" {
		return errors.New("missing client id")
	}
	if !p.Role.Valid() {
		return fmt.Errorf("unknown role %q", p.Role)
	}
	if p.Role == RolePartner && p.PartnerID == "" {
		return errors.New("role PARTNER requires a partner id")
	}
	if p.Role != RolePartner && p.PartnerID != "" {
		return fmt.Errorf("role %s must not carry a partner id", p.Role)
	}
	return nil
}

// principalKey is unexported so that only this package can put a Principal
// into a context; nothing else can spoof an authenticated caller.
type principalKey struct{}

// WithPrincipal returns a copy of ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal attached to ctx by WithPrincipal, and
// whether there was one. Public methods may run without a principal.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
