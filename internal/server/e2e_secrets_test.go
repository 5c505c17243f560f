package server_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// secret is something that must never be stored or logged, under a name for the failure.
type secret struct{ name, value string }

// secretFlow drives a server through the operations that handle secrets, over both
// transports and including failures, and returns every secret that passed through it.
func secretFlow(t *testing.T, h *harness) []secret {
	t.Helper()
	s := seed(t, h, "secret-breach", "secret-monitor")
	ptok := s.partnerToken(t, h)
	adminHTTP := httpToken(t, h, h.adminID, h.adminSecret)
	partnerHTTP := httpToken(t, h, s.partnerClient, s.partnerSecret)
	const wrongSecret = "WrongSecret-Zx81-should-not-appear"

	en := s.redeemRef(t, h, "APP-0001")
	h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": typed(s.codes["APP-0002"])}).ok(t, "CheckCode")
	h.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": s.codes["APP-0003"]}).ok(t, "RedeemCode")
	h.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": s.codes["APP-0001"]}).wantError(t, "redeem twice", http.StatusConflict)
	h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": badCheckSymbol(t, s.codes["PP-1001"])}).wantError(t, "typo", http.StatusBadRequest)
	h.do(t, "POST", "/v1/partner/codes:verify", partnerHTTP, map[string]any{"code": s.codes["APP-0003"]}).ok(t, "VerifyCode")
	h.do(t, "POST", "/v1/"+en.GetName()+":activate", partnerHTTP, map[string]any{"member_id": "S-1"}).ok(t, "ActivateEnrollment")
	h.do(t, "GET", "/v1/"+s.batches["postpaid-customers"].GetName()+":exportCodes", adminHTTP, nil).ok(t, "ExportBatchCodes")
	h.do(t, "POST", "/v1/token", "", map[string]any{"grant_type": "client_credentials", "client_id": s.partnerClient, "client_secret": wrongSecret}).
		wantError(t, "wrong secret", http.StatusUnauthorized)
	h.do(t, "GET", "/v1/incidents", ptok, nil).wantError(t, "partner on admin", http.StatusForbidden)
	if _, err := h.partner.VerifyCode(s.partnerCtx(t, h), &enrollv1.VerifyCodeRequest{Code: typed(s.codes["PP-1001"])}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.redeem.GetEnrollmentStatus(context.Background(), &enrollv1.GetEnrollmentStatusRequest{Code: s.codes["APP-0001"]}); err != nil {
		t.Fatal(err)
	}

	out := []secret{
		{"bootstrap admin secret", h.adminSecret}, {"partner client secret", s.partnerSecret}, {"wrong secret", wrongSecret},
		{"admin token (gRPC)", h.adminToken(t)}, {"partner token (gRPC)", ptok}, {"admin token (HTTP)", adminHTTP}, {"partner token (HTTP)", partnerHTTP},
	}
	for ref, code := range s.codes {
		compact := strings.ReplaceAll(code, "-", "")
		out = append(out, secret{"code of " + ref, code}, secret{"compact code of " + ref, compact},
			secret{"lower-case code of " + ref, strings.ToLower(compact)})
	}
	for _, ssn := range fixtureSSNs {
		out = append(out, secret{"SSN", ssn})
	}
	for _, r := range fixtureSubjects() {
		if r.GetPhone() != "" {
			out = append(out, secret{"phone", r.GetPhone()}, secret{"phone digits", strings.Map(digitsOnly, r.GetPhone())})
		}
		if r.GetDateOfBirth() != "" {
			out = append(out, secret{"date of birth", r.GetDateOfBirth()})
		}
	}
	if len(s.codes) != 4 {
		t.Fatalf("want 4 codes in the flow, got %d", len(s.codes))
	}
	return out
}

func digitsOnly(r rune) rune {
	if r >= '0' && r <= '9' {
		return r
	}
	return -1
}

// Nothing secret is stored: the database holds HMACs and hashes, never a code (in any form),
// a client secret, an SSN or other identity field.
func TestE2ENoPlaintextAtRest(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		secrets := secretFlow(t, h)
		switch h.db.Driver {
		case gormstore.DriverSQLite:
			scanSQLiteFiles(t, h.db.DSN, secrets, "while serving")
			if _, err := h.stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			scanSQLiteFiles(t, h.db.DSN, secrets, "after shutdown")
		case gormstore.DriverPostgres:
			scanPostgres(t, h.db.DSN, secrets)
		default:
			t.Skipf("no at-rest scan for driver %s", h.db.Driver)
		}
	})
}

// scanSQLiteFiles reads every file of the database (main file, -wal, -shm) byte for byte.
func scanSQLiteFiles(t *testing.T, dsn string, secrets []secret, when string) {
	t.Helper()
	dir := filepath.Dir(dsn)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, de := range entries {
		if de.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, raw...)
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s.value)) {
				t.Errorf("%s: %s is stored in plaintext in %s", when, s.name, de.Name())
			}
		}
	}
	// Control: the scan sees real data (external references are stored on purpose).
	if !bytes.Contains(all, []byte("APP-0001")) {
		t.Fatalf("%s: the files in %s do not even contain the external reference APP-0001; the scan is blind", when, dir)
	}
}

// scanPostgres renders every row of every table of the test schema as text (bytea as hex)
// and looks for each secret, as text and as hex.
func scanPostgres(t *testing.T, dsn string, secrets []secret) {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	var tables []string
	if err := db.Raw("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'").
		Scan(&tables).Error; err != nil {
		t.Fatal(err)
	}
	if len(tables) < 5 {
		t.Fatalf("found tables %v in the test schema; want the migrated schema", tables)
	}
	var all strings.Builder
	for _, table := range tables {
		var text string
		q := `SELECT coalesce(string_agg(t::text, E'\n'), '') FROM "` + table + `" AS t`
		if err := db.Raw(q).Scan(&text).Error; err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		all.WriteString(text)
		lower := strings.ToLower(text)
		for _, s := range secrets {
			if strings.Contains(text, s.value) || strings.Contains(lower, hex.EncodeToString([]byte(s.value))) {
				t.Errorf("%s is stored in table %s", s.name, table)
			}
		}
	}
	if !strings.Contains(all.String(), "APP-0001") {
		t.Fatalf("the tables %v do not even contain the external reference APP-0001; the scan is blind", tables)
	}
}

// Nothing secret is logged: not codes, client secrets, access tokens or identity fields,
// whether the call succeeded or failed.
func TestE2ENoSecretsInLogs(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		secrets := secretFlow(t, h)
		if _, err := h.stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		logs := h.logs.String()
		// Control: the calls were logged, so an absence below means something.
		for _, want := range []string{"/enroll.v1.RedemptionService/RedeemCode", "/enroll.v1.AuthService/Token", "AlreadyExists", "Unauthenticated", `"stopped"`} {
			if !strings.Contains(logs, want) {
				t.Fatalf("the log has no %q; is it captured?\n%s", want, logs)
			}
		}
		for _, s := range secrets {
			if strings.Contains(logs, s.value) {
				t.Errorf("%s appears in the log", s.name)
			}
		}
	})
}
