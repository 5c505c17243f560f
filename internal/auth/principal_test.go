package auth

import (
	"context"
	"testing"
)

func TestParseRole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Role
		wantErr bool
	}{
		{name: "admin", in: "ADMIN", want: RoleAdmin},
		{name: "partner", in: "PARTNER", want: RolePartner},
		{name: "finance", in: "FINANCE", want: RoleFinance},
		{name: "lowercase is not a role", in: "admin", wantErr: true},
		{name: "padded is not a role", in: " ADMIN", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "unknown", in: "ROOT", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRole(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseRole(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseRole(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got.Valid() != !tt.wantErr {
				t.Errorf("Role(%q).Valid() = %v", got, got.Valid())
			}
		})
	}
}

func TestPrincipalValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		p       Principal
		wantErr bool
	}{
		{name: "admin", p: Principal{ClientID: "cli_a", Role: RoleAdmin}},
		{name: "finance", p: Principal{ClientID: "cli_a", Role: RoleFinance}},
		{name: "partner with partner id", p: Principal{ClientID: "cli_a", Role: RolePartner, PartnerID: "p1"}},
		{name: "partner without partner id", p: Principal{ClientID: "cli_a", Role: RolePartner}, wantErr: true},
		{name: "admin with partner id", p: Principal{ClientID: "cli_a", Role: RoleAdmin, PartnerID: "p1"}, wantErr: true},
		{name: "missing client id", p: Principal{Role: RoleAdmin}, wantErr: true},
		{name: "unknown role", p: Principal{ClientID: "cli_a", Role: "ROOT"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.p.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() error = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestPrincipalContext(t *testing.T) {
	t.Parallel()
	if _, ok := PrincipalFrom(context.Background()); ok {
		t.Fatal("PrincipalFrom(empty context) reported a principal")
	}
	want := Principal{ClientID: "cli_a", Role: RolePartner, PartnerID: "p1", TokenID: "j1"}
	got, ok := PrincipalFrom(WithPrincipal(context.Background(), want))
	if !ok || got != want {
		t.Errorf("PrincipalFrom = %+v, %v; want %+v, true", got, ok, want)
	}
}
