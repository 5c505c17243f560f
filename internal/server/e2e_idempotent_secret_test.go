package server_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// TestE2EIdempotentCreateClientKeepsNoSecret: a CreateClient retried with its request_id
// returns the same client, but the secret is shown once only and never stored.
func TestE2EIdempotentCreateClientKeepsNoSecret(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		s := seed(t, h, "breach-2026", "monitor-co")
		ctx := h.adminCtx(t)
		req := &enrollv1.CreateClientRequest{RequestId: "create-client-1", Client: &enrollv1.Client{Role: enrollv1.Role_ROLE_PARTNER, Partner: s.partner}}
		first, err := h.admin.CreateClient(ctx, req)
		if err != nil || first.GetClientSecret() == "" {
			t.Fatalf("first CreateClient: %v %v", first, err)
		}
		again, err := h.admin.CreateClient(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if again.GetClientSecret() != "" || !proto.Equal(again.GetClient(), first.GetClient()) {
			t.Fatalf("replay: %v, want the same client without its secret", again)
		}
		secrets := []secret{{"the new client's secret", first.GetClientSecret()}}
		switch h.db.Driver {
		case gormstore.DriverSQLite:
			if _, err := h.stop(); err != nil {
				t.Fatal(err)
			}
			scanSQLiteFiles(t, h.db.DSN, secrets, "after a replayed CreateClient")
		case gormstore.DriverPostgres:
			scanPostgres(t, h.db.DSN, secrets)
		}
	})
}
