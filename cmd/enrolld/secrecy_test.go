package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// purgeSubjects is how many codes the purge test issues and then hunts for.
const purgeSubjects = 5000

// After PurgeBatchExport no plaintext code can be recovered by anyone: the export is refused
// (also after a restart), and neither the database, byte for byte, nor the server log holds
// any issued code in any form. The codes themselves still redeem.
func TestProcessPurgeLeavesNoPlaintext(t *testing.T) {
	t.Parallel()
	path := writeSynthetic(t, purgeSubjects, "everyone", "PUR", 0)
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		began := time.Now()
		d := newDaemon(t, e)
		d.start()
		d.createIncident("purge", "everyone")
		d.mustImport("purge", path, purgeSubjects, 0)
		b := d.issue("purge", "everyone")
		d.waitBatch(b.GetName(), 2*time.Minute)
		codeList := checkExport(t, d.export(b.GetName()), "PUR", purgeSubjects)
		redeem := func(i int) {
			t.Helper()
			if _, err := d.redeem.RedeemCode(d.ctx(), &enrollv1.RedeemCodeRequest{Code: codeList[i]}); err != nil {
				t.Fatalf("redeem %s: %v", ref("PUR", i), err)
			}
		}
		for i := range 10 {
			redeem(i)
		}

		resp, err := d.admin.PurgeBatchExport(d.ctx(), &enrollv1.PurgeBatchExportRequest{Name: b.GetName()})
		if err != nil {
			t.Fatalf("PurgeBatchExport: %v", err)
		}
		if !resp.GetBatch().GetExportPurged() {
			t.Fatalf("PurgeBatchExport returned a batch that is not purged: %v", resp.GetBatch())
		}
		wantPurged := func(when string) {
			t.Helper()
			rows, err := d.tryExport(d.ctx(), b.GetName())
			if status.Code(err) != codes.FailedPrecondition || len(rows) != 0 {
				t.Fatalf("%s: export gave %d rows and %v; want FailedPrecondition and nothing", when, len(rows), err)
			}
		}
		wantPurged("after purge")
		redeem(10) // the purge destroys the plaintext, not the codes

		if code, _ := d.term(30 * time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
		d.start()
		wantPurged("after a restart")
		redeem(11)
		if code, _ := d.term(30 * time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}

		finder := newCodeFinder(codeList)
		checkCodeFinder(t, finder, codeList)
		blob := d.dbBlob()
		if !bytes.Contains(blob, []byte(ref("PUR", purgeSubjects-1))) {
			t.Fatalf("control: the database scan (%d bytes) does not even find the external reference %s; the scan is blind", len(blob), ref("PUR", purgeSubjects-1))
		}
		if found := finder.find(blob); len(found) > 0 {
			t.Errorf("%d issued codes are in the database after the purge, e.g. %v", len(found), some(found))
		}
		logs := d.allLogs()
		for _, want := range []string{"/enroll.v1.AdminService/ExportBatchCodes", "/enroll.v1.AdminService/PurgeBatchExport", "/enroll.v1.RedemptionService/RedeemCode", `"msg":"stopped"`} {
			if !bytes.Contains(logs, []byte(want)) {
				t.Fatalf("control: the server log has no %q; is it captured?", want)
			}
		}
		if found := finder.find(logs); len(found) > 0 {
			t.Errorf("%d issued codes are in the server log, e.g. %v", len(found), some(found))
		}
		elapsed(t, "purge scenario", began)
	})
}

// The importer never writes a raw SSN or phone number: after importing rows that carry full
// SSNs (with and without hyphens) and phone numbers, and a lost-code request with a full SSN,
// neither the database nor the server log holds any of them, in the form given or as bare
// digits.
func TestProcessImportNeverStoresIdentifiers(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "ssn.csv",
		"SSN-0001,everyone,Rivera,1984-03-12,517-29-8463,,98101",
		"SSN-0002,everyone,Chen,1990-07-01,517298464,,10001",
		"SSN-0003,everyone,Okafor,1975-11-23,517 29 8465,,60601",
		"TEL-0001,everyone,Smith,1970-01-02,,+1 (415) 555-0137,94110",
		"TEL-0002,everyone,Nguyen,1971-02-03,,415-555-0138,94110",
		"TEL-0003,everyone,Novak,1972-03-04,,4155550139,94110",
		"BOTH-0001,everyone,Lee,1973-04-05,517-29-8466,(415) 555-0140,94110",
		"BADSSN-0001,everyone,Garcia,1974-05-06,517-29-84670,,94110", // ten digits: rejected
	)
	secrets := []secret{}
	for _, v := range []string{"517-29-8463", "517298464", "517 29 8465", "517-29-8466", "517-29-84670", "517-29-8499"} {
		digits := strings.Map(digitsOnly, v)
		secrets = append(secrets, secret{"SSN", v}, secret{"SSN digits", digits})
		if len(digits) == 9 {
			secrets = append(secrets, secret{"SSN formatted", digits[:3] + "-" + digits[3:5] + "-" + digits[5:]})
		}
	}
	for _, v := range []string{"+1 (415) 555-0137", "415-555-0138", "4155550139", "(415) 555-0140"} {
		digits := strings.Map(digitsOnly, v)
		secrets = append(secrets, secret{"phone", v}, secret{"phone digits", digits}, secret{"phone digits", digits[len(digits)-10:]},
			secret{"phone formatted", digits[len(digits)-10:len(digits)-7] + "-" + digits[len(digits)-7:len(digits)-4] + "-" + digits[len(digits)-4:]})
	}
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		d := newDaemon(t, e)
		d.start()
		d.createIncident("ssn", "everyone")
		resp, readerErrs, err := d.importFile(d.ctx(), "ssn", path)
		if err != nil || len(readerErrs) > 0 {
			t.Fatalf("import: %v, reader errors %v", err, readerErrs)
		}
		if resp.GetCreated() != 7 || resp.GetErrorCount() != 1 || resp.GetErrors()[0].GetLine() != 9 {
			t.Fatalf("import: %v; want 7 created and line 9 rejected", resp)
		}
		if found := findSecrets([]byte(resp.String()), secrets); len(found) > 0 {
			t.Errorf("the import response echoes %v", found)
		}
		// Lost-code requests carry identity fields too: one that matches a subject, one that
		// does not, one with an idempotency key.
		for _, req := range []*enrollv1.RequestCodeResendRequest{
			{LastName: "Rivera", DateOfBirth: "1984-03-12", Ssn: "517-29-8463", PostalCode: "98101"},
			{LastName: "Rivera", DateOfBirth: "1984-03-12", Ssn: "517-29-8499", PostalCode: "98101", RequestId: "resend-1"},
			{LastName: "Smith", DateOfBirth: "1970-01-02", Phone: "+1 (415) 555-0137", PostalCode: "94110"},
		} {
			if _, err := d.redeem.RequestCodeResend(context.Background(), req); err != nil {
				t.Fatalf("RequestCodeResend: %v", err)
			}
		}
		if code, _ := d.term(30 * time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}

		blob := d.dbBlob()
		for _, ref := range []string{"SSN-0001", "TEL-0003", "BOTH-0001"} {
			if !bytes.Contains(blob, []byte(ref)) {
				t.Fatalf("control: the database scan (%d bytes) does not even find the external reference %s; the scan is blind", len(blob), ref)
			}
		}
		if found := findSecrets(blob, secrets); len(found) > 0 {
			t.Errorf("the database holds %v", found)
		}
		logs := d.allLogs()
		for _, want := range []string{"/enroll.v1.AdminService/ImportSubjects", "/enroll.v1.RedemptionService/RequestCodeResend", `"msg":"stopped"`} {
			if !bytes.Contains(logs, []byte(want)) {
				t.Fatalf("control: the server log has no %q; is it captured?", want)
			}
		}
		if found := findSecrets(logs, secrets); len(found) > 0 {
			t.Errorf("the server log holds %v", found)
		}
	})
}

func digitsOnly(r rune) rune {
	if r >= '0' && r <= '9' {
		return r
	}
	return -1
}

// some lists up to three members of a set.
func some(set map[string]bool) []string {
	var out []string
	for k := range set {
		if len(out) == 3 {
			break
		}
		out = append(out, k)
	}
	return out
}
