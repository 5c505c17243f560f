package server_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/audit"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// TestE2EAuditChain: every mutating call of an authenticated client, failed ones included,
// and every export of plaintext codes leaves an entry; the exported chain verifies offline,
// and a tampered copy does not.
func TestE2EAuditChain(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0)
		s := seed(t, h, "breach-2026", "monitor-co")
		ctx := h.adminCtx(t)
		_, err := h.admin.CreateIncident(ctx, &enrollv1.CreateIncidentRequest{IncidentId: "breach-2026", Incident: &enrollv1.Incident{Title: "again", Partner: s.partner}})
		wantCode(t, "duplicate incident", err, codes.AlreadyExists)
		var batch string
		for _, b := range s.batches {
			batch = b.GetName()
		}
		if _, err := h.admin.PurgeBatchExport(ctx, &enrollv1.PurgeBatchExportRequest{Name: batch, RequestId: "purge-1"}); err != nil {
			t.Fatal(err)
		}

		stream, err := h.reporting.ExportAudit(ctx, &enrollv1.ExportAuditRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var lines bytes.Buffer
		var entries []*enrollv1.AuditEntry
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, pe := range chunk.GetEntries() {
				entries = append(entries, pe)
				e := audit.Entry{Seq: pe.GetSequence(), Time: pe.GetTime().AsTime(), Actor: pe.GetActor(), Role: pe.GetRole(), Action: pe.GetAction(),
					Resource: pe.GetResource(), RequestID: pe.GetRequestId(), Outcome: pe.GetOutcome(), PrevHash: pe.GetPrevHash(), Hash: pe.GetHash()}
				l, _ := e.MarshalLine()
				lines.Write(l)
			}
		}
		n, err := audit.Verify(bytes.NewReader(lines.Bytes()))
		if err != nil || n != int64(len(entries)) {
			t.Fatalf("untouched export: verified %d of %d: %v", n, len(entries), err)
		}
		want := map[string]string{
			"/enroll.v1.AdminService/CreatePartner|partners/monitor-co|OK":               "",
			"/enroll.v1.AdminService/CreateIncident|incidents/breach-2026|OK":            "",
			"/enroll.v1.AdminService/CreateIncident|incidents/breach-2026|AlreadyExists": "",
			"/enroll.v1.AdminService/ExportBatchCodes|" + batch + "|STARTED":             "",
			"/enroll.v1.AdminService/PurgeBatchExport|" + batch + "|OK":                  "",
		}
		for _, pe := range entries {
			delete(want, pe.GetAction()+"|"+pe.GetResource()+"|"+pe.GetOutcome())
			if pe.GetActor() != "clients/"+h.adminID && !strings.HasPrefix(pe.GetActor(), "clients/") {
				t.Fatalf("entry without a client actor: %v", pe)
			}
		}
		if len(want) > 0 {
			t.Fatalf("audit chain lacks %v; entries: %v", want, entries)
		}
		// One edited byte in the middle of the export is found.
		tampered := strings.Replace(lines.String(), `"outcome":"AlreadyExists"`, `"outcome":"OK"`, 1)
		if _, err := audit.Verify(strings.NewReader(tampered)); err == nil {
			t.Fatal("a tampered export verified")
		}
	})
}
