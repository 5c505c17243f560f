package ctl_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/eligibility"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/identity"
	"github.com/idprotect/enroll/internal/server/servertest"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// start runs a fresh server on its own SQLite database.
func start(t *testing.T) *servertest.Server {
	t.Helper()
	return servertest.Start(t, gormtest.SQLite(t), time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
}

// admin returns an admin client and a context carrying its token.
func admin(t *testing.T, s *servertest.Server) (context.Context, enrollv1.AdminServiceClient) {
	t.Helper()
	ctx := context.Background()
	tok, err := enrollv1.NewAuthServiceClient(s.Conn).Token(ctx, &enrollv1.TokenRequest{
		GrantType: "client_credentials", ClientId: s.AdminID, ClientSecret: s.AdminSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.GetAccessToken()), enrollv1.NewAdminServiceClient(s.Conn)
}

// offered lists the generator's cohorts that are offered protection; prepaid is not.
var offered = map[string]bool{eligibility.CohortCredit: true, eligibility.CohortPostpaid: true, eligibility.CohortPrepaid: false}

// newIncident creates incident id with the generator's three cohorts.
func newIncident(t *testing.T, s *servertest.Server, id string) {
	t.Helper()
	ctx, a := admin(t, s)
	_, err := a.CreatePartner(ctx, &enrollv1.CreatePartnerRequest{PartnerId: "monitor", Partner: &enrollv1.Partner{
		DisplayName: "Monitoring Co.", EnrollmentUri: "https://partner.example/enroll",
	}})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		t.Fatal(err)
	}
	if _, err := a.CreateIncident(ctx, &enrollv1.CreateIncidentRequest{IncidentId: id, Incident: &enrollv1.Incident{
		Title: "Test breach " + id, Partner: "partners/monitor",
	}}); err != nil {
		t.Fatal(err)
	}
	for cohort, applies := range offered {
		if _, err := a.CreateCohort(ctx, &enrollv1.CreateCohortRequest{Parent: "incidents/" + id, CohortId: cohort, Cohort: &enrollv1.Cohort{
			DisplayName: cohort, ExposedData: []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME}, OfferApplies: applies,
		}}); err != nil {
			t.Fatal(err)
		}
	}
}

// generated returns a synthetic eligibility file with some lines replaced, keyed by their
// 1-based line number (the header is line 1).
func generated(t *testing.T, o eligibility.GenerateOptions, replace map[int]string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := eligibility.Generate(&b, o); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(b.String(), "\n")
	for n, l := range replace {
		if n < 2 || n > len(lines) {
			t.Fatalf("line %d is not a data line", n)
		}
		lines[n-1] = l + "\n"
	}
	return []byte(strings.Join(lines, ""))
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// expectation is what importing a file must give, worked out here from the file alone with
// the domain's own validation and identity normalisation (not from the server's answers).
type expectation struct {
	rows, created, memberships, unchanged int64
	errLines                              []int64
	// offeredPeople is the number of distinct people in cohorts offered protection: the
	// number of codes issuing to the whole incident must give.
	offeredPeople int64
}

func expect(t *testing.T, data []byte) expectation {
	t.Helper()
	rd, err := eligibility.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var e expectation
	people, pairs, offeredSet := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var valid int64
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		e.rows++
		var re *eligibility.RowError
		if errors.As(err, &re) {
			e.errLines = append(e.errLines, re.Line)
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		tuple, err := identity.Normalize(identity.Fields{LastName: rec.LastName, DateOfBirth: rec.DateOfBirth, SSN: rec.SSN, Phone: rec.Phone, PostalCode: rec.PostalCode})
		if _, known := offered[rec.Cohort]; err != nil || !known || enrollment.ValidateExternalRef(rec.ExternalRef) != nil {
			e.errLines = append(e.errLines, rec.Line)
			continue
		}
		valid++
		people[tuple] = true
		pairs[tuple+"\x00"+rec.Cohort] = true
		if offered[rec.Cohort] {
			offeredSet[tuple] = true
		}
	}
	e.created = int64(len(people))
	e.memberships = int64(len(pairs)) - e.created
	e.unchanged = valid - int64(len(pairs))
	e.offeredPeople = int64(len(offeredSet))
	return e
}

// summary is enrollctl import's summary, parsed.
type summary struct {
	out      string
	values   map[string]int64
	stopped  bool
	errLines []int64
}

var errLine = regexp.MustCompile(`^  line (\d+): `)

func parseSummary(t *testing.T, out string) summary {
	t.Helper()
	s := summary{out: out, values: map[string]int64{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if m := errLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			s.errLines = append(s.errLines, n)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.HasPrefix(l, " ") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if k == "stopped early" {
			s.stopped = strings.TrimSuffix(f[0], ",") == "yes"
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			s.values[k] = n
		}
	}
	for _, k := range []string{"rows read", "created", "memberships added", "unchanged", "errors"} {
		if _, ok := s.values[k]; !ok {
			t.Fatalf("summary lacks %q:\n%s", k, out)
		}
	}
	return s
}
