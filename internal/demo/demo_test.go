package demo_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/idprotect/enroll/internal/demo"
	"github.com/idprotect/enroll/internal/server/servertest"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// TestWalkthrough seeds the demo and runs the README's curl walkthrough against the real
// server, so the commands a new user copies keep working.
func TestWalkthrough(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("walkthrough needs %s on PATH", tool)
		}
	}
	s := servertest.Start(t, gormtest.SQLite(t), time.Now().UTC())
	res, err := demo.Seed(context.Background(), s.Conn, s.AdminID, s.AdminSecret)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Codes) != 5 {
		// 6 people are offered protection, one of them in two cohorts: 5 codes.
		t.Fatalf("demo issued %d codes, want 5", len(res.Codes))
	}
	var sheet bytes.Buffer
	demo.Print(&sheet, res, s.HTTPBase)
	if !strings.Contains(sheet.String(), res.Codes[0].Code) || !strings.Contains(sheet.String(), res.PartnerSecret) {
		t.Fatal("the demo sheet must show the codes and the partner secret")
	}

	cmd := exec.Command("bash", "-euo", "pipefail", "-c", demo.Walkthrough)
	cmd.Env = append(os.Environ(),
		"API="+s.HTTPBase, "CODE="+strings.ToLower(strings.ReplaceAll(res.Codes[0].Code, "-", "")),
		"PARTNER_ID="+res.PartnerID, "PARTNER_SECRET="+res.PartnerSecret,
		"FINANCE_ID="+res.FinanceID, "FINANCE_SECRET="+res.FinanceSecret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		`"state":"CODE_STATE_ISSUED"`,        // 1. check
		`"state":"ENROLLMENT_STATE_ACTIVE"`,  // 4. activate
		`"member_id":"M-1001"`,               // 4. bound member id
		`"code_state":"CODE_STATE_REDEEMED"`, // 5. status
		`"redeemed":"1"`, `"active":"1"`,     // 6. finance counts
	} {
		if !strings.Contains(strings.ReplaceAll(string(out), " ", ""), want) {
			t.Errorf("walkthrough output lacks %s:\n%s", want, out)
		}
	}
}

// TestReadmeShowsTheWalkthrough keeps the README's copy of the walkthrough identical to the
// one the server prints and the test above runs.
func TestReadmeShowsTheWalkthrough(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, line := range strings.Split(demo.Walkthrough, "\n") {
		if line != "" && !strings.HasPrefix(line, "echo") {
			steps = append(steps, line)
		}
	}
	for _, l := range steps {
		if !strings.Contains(string(readme), l) {
			t.Errorf("README.md lacks walkthrough line:\n%s", l)
		}
	}
}

// TestSeedIsIdempotent: a restart of the demo server must not seed twice.
func TestSeedIsIdempotent(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t, gormtest.SQLite(t), time.Now().UTC())
	if _, err := demo.Seed(context.Background(), s.Conn, s.AdminID, s.AdminSecret); err != nil {
		t.Fatal(err)
	}
	again, err := demo.Seed(context.Background(), s.Conn, s.AdminID, s.AdminSecret)
	if err != nil || !again.AlreadySeeded {
		t.Fatalf("second seed: %+v, %v", again, err)
	}
	var sheet bytes.Buffer
	demo.Print(&sheet, again, s.HTTPBase)
	if !strings.Contains(sheet.String(), "already exists") {
		t.Fatalf("second sheet: %s", sheet.String())
	}
}
