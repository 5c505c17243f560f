package server_test

// Finance truth under load: a randomized run drives thousands of mixed operations over gRPC
// from several goroutines at once (redeem, activate, cancel by the partner and by the member,
// revoke, reissue and export, counts reads, idempotent retries) while the fake clock jumps by
// hours to weeks across redeem-by instants, activation windows and coverage ends and the
// server's own sweeper records the deadlines. At checkpoints (workers stopped, sweeper caught
// up) the counters must equal a recount exactly: the Recount RPC reports no difference, and
// GetCounts equals a GROUP BY over the code and enrollment rows, per cohort and in total.
//
// ENROLL_TEST_SEED=<seed from the log> replays a run's random choices (the clock walk, each
// goroutine's operations); the interleaving, and so the outcomes, differ from run to run.
// ENROLL_TEST_FIN_OPS sets the number of operations (default 3000, 1800 under -race, 600
// under -short).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// finParams sizes a run.
type finParams struct {
	perCohort int // subjects imported per cohort
	ops       int // operations over all workers
	workers   int
	phases    int // a checkpoint follows each phase
	jumps     int // clock jumps over the run, together finWalk of fake time
}

func TestE2EFinanceRandom(t *testing.T) {
	t.Parallel()
	p := finParams{perCohort: 800, ops: 3000, workers: 8, phases: 3, jumps: 28}
	switch {
	case testing.Short():
		p = finParams{perCohort: 200, ops: 600, workers: 6, phases: 2, jumps: 26}
	case finRace():
		// The race detector makes every call several times slower: fewer operations keep
		// the run near a minute per engine on two cores.
		p = finParams{perCohort: 500, ops: 1800, workers: 8, phases: 3, jumps: 28}
	}
	if v := os.Getenv("ENROLL_TEST_FIN_OPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < p.phases*p.workers {
			t.Fatalf("ENROLL_TEST_FIN_OPS=%q: want a number of operations, at least %d", v, p.phases*p.workers)
		}
		p.ops = n
	}
	t.Logf("%d subjects per cohort, %d operations from %d goroutines in %d phases, %d clock jumps", p.perCohort, p.ops, p.workers, p.phases, p.jumps)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("ENROLL_TEST_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ENROLL_TEST_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("seed %d (rerun with ENROLL_TEST_SEED=%d)", seed, seed)
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		r := &finRun{t: t, p: p, seed: seed, toks: map[string]finTok{}, stats: map[string]map[codes.Code]int{}, latest: map[string]string{},
			refOf: map[string]string{}, enrollOf: map[string]finEnroll{}}
		r.run(e)
	})
}

// finRace reports whether the test binary was built with -race.
func finRace() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// The incident's offer is short so that an hour-to-weeks clock walk crosses every deadline
// many times: codes expire 30 days after issuance, pending enrollments lapse after 7 days,
// coverage ends after a month.
const (
	finIncident       = "fin-random"
	finPartner        = "fin-monitor"
	finRedeemDays     = 30
	finActivationDays = 7
	finCoverageMonths = 1
	finSweepInterval  = time.Second // the shortest the configuration accepts
)

var finCohorts = []string{"applicants", "postpaid", "prepaid"}

type finCode struct{ ref, code string }

type finEnroll struct{ name, code string }

type finTok struct {
	tok   string
	epoch int64
	exp   time.Time
}

type finRun struct {
	t    *testing.T
	p    finParams
	seed uint64
	h    *harness
	sql  *gorm.DB

	partnerClient, partnerSecret string
	financeClient, financeSecret string

	// clockMu: a jump holds it exclusively; a call and its idempotent retry hold it shared,
	// so the stored outcome cannot be purged (or the token expire) between the two.
	clockMu sync.RWMutex
	epoch   atomic.Int64 // bumped by every jump: tokens from an older epoch may have expired

	tokMu      sync.Mutex
	toks       map[string]finTok
	minter     *auth.Tokens
	principals map[string]auth.Principal

	poolMu   sync.Mutex
	codes    []finCode            // every code ever mailed, live or not
	latest   map[string]string    // external_ref → its newest code
	refOf    map[string]string    // code → external_ref
	enrollOf map[string]finEnroll // external_ref → its newest enrollment
	refs     []string             // subjects that were mailed a code
	hot      []string             // a few subjects most operations aim at, to make them race
	enrolls  []finEnroll
	members  []string // member ids bound so far

	statMu     sync.Mutex
	stats      map[string]map[codes.Code]int
	unexpected []string
	nUnexp     int

	// What the counters must reflect, from the callers' side.
	initialCodes                         int64
	redeemOK, reissueOK, cancelOK, actOK atomic.Int64
	jumps, sweepWaits, sweepWaitTimeouts atomic.Int64
	replays                              atomic.Int64
	seenIssued                           sync.Map     // worker → codes issued at its last GetCounts
	advanced                             atomic.Int64 // fake time moved by jumps, ns
	ridSeq                               atomic.Int64
}

func (r *finRun) run(e gormtest.Engine) {
	t := r.t
	began := time.Now()
	r.h = start(t, e, t0, func(c *config.Config) {
		c.SweepInterval = finSweepInterval
		// Every code tried exists, so no guess is ever counted; the partner quota is per fake
		// minute and the clock stands still for long stretches.
		c.LimitPartnerCalls = "1000000/1m"
	})
	r.sql = finOpenSQL(t, r.h.db)
	cfg := r.h.app.Config
	minter, err := auth.NewTokens(auth.TokenConfig{Issuer: cfg.Issuer, Audience: cfg.Audience, TTL: cfg.TokenTTL, Keys: []auth.SigningKey{r.h.jwtKey}, Clock: r.h.clock})
	if err != nil {
		t.Fatal(err)
	}
	r.minter = minter
	r.seedIncident()
	t.Logf("%s: seeded %d subjects, %d codes in %v", e.Name, len(r.refs), r.initialCodes, time.Since(began).Round(time.Millisecond))
	r.checkpoint("after issuance")

	rngs := make([]*rand.Rand, r.p.workers)
	for w := range rngs {
		rngs[w] = rand.New(rand.NewPCG(r.seed, uint64(w)+1))
	}
	perPhase := r.p.ops / r.p.phases
	walk := finPlanWalk(rand.New(rand.NewPCG(r.seed, 1000)), perPhase*r.p.phases, r.p.jumps)
	var ticket atomic.Int64 // operation number over the whole run
	for ph := range r.p.phases {
		phaseStart := time.Now()
		end := int64((ph + 1) * perPhase)
		var wg sync.WaitGroup
		for w := range r.p.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					op := ticket.Add(1)
					if op > end {
						ticket.Add(-1) // not taken: the next phase starts from here
						return
					}
					if d, ok := walk[op]; ok {
						r.jump(d)
						continue
					}
					r.step(w, rngs[w])
				}
			}()
		}
		wg.Wait()
		t.Logf("%s: phase %d: %d operations in %v (fake clock now %s)", e.Name, ph+1, perPhase,
			time.Since(phaseStart).Round(time.Millisecond), r.h.clock.Now().Format(time.RFC3339))
		r.reportUnexpected()
		r.checkpoint(fmt.Sprintf("after phase %d", ph+1))
		if t.Failed() {
			r.logStats(e.Name)
			t.FailNow()
		}
	}

	// The end of everything: far past every deadline, the sweeper leaves nothing live.
	r.clockMu.Lock()
	r.h.clock.Advance(400 * 24 * time.Hour)
	r.epoch.Add(1)
	r.clockMu.Unlock()
	final := r.checkpoint("400 days later")
	if final.codes.outstanding != 0 || final.enr.pending != 0 || final.enr.active != 0 {
		t.Errorf("400 days after the run: %d codes outstanding, %d enrollments pending, %d active; want all swept to final states",
			final.codes.outstanding, final.enr.pending, final.enr.active)
	}
	r.checkSweepLog()
	r.reportUnexpected()
	r.logStats(e.Name)
	t.Logf("%s: %d operations, %d clock jumps (%v of fake time), %d idempotent retries, total %v",
		e.Name, perPhase*r.p.phases, r.jumps.Load(), time.Duration(r.advanced.Load()).Round(time.Hour),
		r.replays.Load(), time.Since(began).Round(time.Millisecond))
}

// seedIncident creates the partner (with a partner client), a finance client, the incident
// with its short offer, three offered cohorts, imports perCohort subjects into each (some
// people in two cohorts) and issues the cohorts four fake days apart, so their codes expire
// at different points of the walk.
func (r *finRun) seedIncident() {
	t, h := r.t, r.h
	ctx := h.adminCtx(t)
	if _, err := h.admin.CreatePartner(ctx, &enrollv1.CreatePartnerRequest{PartnerId: finPartner, Partner: &enrollv1.Partner{
		DisplayName: "Finance monitor", EnrollmentUri: "https://monitor.example/enroll",
	}}); err != nil {
		t.Fatalf("CreatePartner: %v", err)
	}
	for _, c := range []struct {
		role       enrollv1.Role
		partner    string
		id, secret *string
	}{
		{enrollv1.Role_ROLE_PARTNER, "partners/" + finPartner, &r.partnerClient, &r.partnerSecret},
		{enrollv1.Role_ROLE_FINANCE, "", &r.financeClient, &r.financeSecret},
	} {
		resp, err := h.admin.CreateClient(ctx, &enrollv1.CreateClientRequest{Client: &enrollv1.Client{
			Role: c.role, Partner: c.partner, DisplayName: "finance random " + c.role.String(),
		}})
		if err != nil {
			t.Fatalf("CreateClient %v: %v", c.role, err)
		}
		*c.id, *c.secret = strings.TrimPrefix(resp.GetClient().GetName(), "clients/"), resp.GetClientSecret()
	}
	r.principals = map[string]auth.Principal{
		h.adminID:       {ClientID: h.adminID, Role: auth.RoleAdmin},
		r.partnerClient: {ClientID: r.partnerClient, Role: auth.RolePartner, PartnerID: finPartner},
		r.financeClient: {ClientID: r.financeClient, Role: auth.RoleFinance},
	}
	if _, err := h.admin.CreateIncident(ctx, &enrollv1.CreateIncidentRequest{IncidentId: finIncident, Incident: &enrollv1.Incident{
		Title: "Randomized finance breach", Partner: "partners/" + finPartner,
		Offer: &enrollv1.Offer{CoverageMonths: finCoverageMonths, RedeemWindowDays: finRedeemDays, ActivationWindowDays: finActivationDays},
	}}); err != nil {
		t.Fatalf("CreateIncident: %v", err)
	}
	for _, c := range finCohorts {
		if _, err := h.admin.CreateCohort(ctx, &enrollv1.CreateCohortRequest{Parent: "incidents/" + finIncident, CohortId: c, Cohort: &enrollv1.Cohort{
			DisplayName: c, ExposedData: []enrollv1.ExposedData{enrollv1.ExposedData_EXPOSED_DATA_NAME, enrollv1.ExposedData_EXPOSED_DATA_SSN},
			RecommendedActions: []string{"Enroll in identity protection."}, OfferApplies: true,
		}}); err != nil {
			t.Fatalf("CreateCohort %s: %v", c, err)
		}
	}
	var rows []*enrollv1.SubjectRecord
	person := func(i int) (string, string, string, string) {
		return fmt.Sprintf("Person%05d", i), fmt.Sprintf("19%02d-%02d-%02d", 40+i%60, 1+i%12, 1+i%28),
			fmt.Sprintf("%03d-%02d-%04d", 100+i%800, 10+i%89, i%10000), fmt.Sprintf("%05d", 10000+i%89999)
	}
	for i := range r.p.perCohort {
		last, dob, ssn, zip := person(i)
		rows = append(rows, &enrollv1.SubjectRecord{ExternalRef: fmt.Sprintf("A-%05d", i), Cohort: "applicants", LastName: last, DateOfBirth: dob, Ssn: ssn, PostalCode: zip})
	}
	for i := range r.p.perCohort {
		// Every 25th postpaid customer is also an applicant: one person, one code.
		last, dob, ssn, zip := person(r.p.perCohort + i)
		if i%25 == 0 {
			last, dob, ssn, zip = person(i)
		}
		rows = append(rows, &enrollv1.SubjectRecord{ExternalRef: fmt.Sprintf("P-%05d", i), Cohort: "postpaid", LastName: last, DateOfBirth: dob, Ssn: ssn, PostalCode: zip})
	}
	for i := range r.p.perCohort {
		rows = append(rows, &enrollv1.SubjectRecord{ExternalRef: fmt.Sprintf("R-%05d", i), Cohort: "prepaid",
			LastName: fmt.Sprintf("Prepaid%05d", i), Phone: fmt.Sprintf("+1 206 555 %04d", i)})
	}
	imp := h.importSubjects(t, ctx, "incidents/"+finIncident, rows)
	if len(imp.GetErrors()) != 0 {
		t.Fatalf("import rejected rows: %v", imp.GetErrors())
	}
	for i, c := range finCohorts {
		if i > 0 {
			h.clock.Advance(4 * 24 * time.Hour)
		}
		ctx := h.adminCtx(t) // the clock moved: the token may have expired
		b := h.issue(t, ctx, "incidents/"+finIncident+"/cohorts/"+c)
		for _, row := range exportCodes(t, h, ctx, b.GetName()) {
			r.addCode(row.GetExternalRef(), row.GetCode(), true)
			r.initialCodes++
		}
	}
	// One person in two cohorts gets one code.
	if want := int64(len(finCohorts)*r.p.perCohort - (r.p.perCohort+24)/25); r.initialCodes != want {
		t.Fatalf("issuance mailed %d codes to %d imported rows; want %d (one per person)", r.initialCodes, len(finCohorts)*r.p.perCohort, want)
	}
	shuffled := slices.Clone(r.refs)
	rand.New(rand.NewPCG(r.seed, 0)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	r.hot = shuffled[:min(16, len(shuffled))]
}

func (r *finRun) addCode(ref, code string, newSubject bool) {
	r.poolMu.Lock()
	defer r.poolMu.Unlock()
	r.codes = append(r.codes, finCode{ref, code})
	r.latest[ref] = code
	r.refOf[code] = ref
	if newSubject {
		r.refs = append(r.refs, ref)
	}
}

// pickCode: a hot subject's newest code, one of the newest codes, or any code ever mailed.
func (r *finRun) pickCode(rng *rand.Rand) string {
	r.poolMu.Lock()
	defer r.poolMu.Unlock()
	switch x := rng.IntN(100); {
	case x < 25:
		return r.latest[r.hot[rng.IntN(len(r.hot))]]
	case x < 35:
		return r.codes[len(r.codes)-1-rng.IntN(min(len(r.codes), 24))].code
	default:
		return r.codes[rng.IntN(len(r.codes))].code
	}
}

func (r *finRun) pickRef(rng *rand.Rand) string {
	r.poolMu.Lock()
	defer r.poolMu.Unlock()
	if rng.IntN(100) < 30 {
		return r.hot[rng.IntN(len(r.hot))]
	}
	return r.refs[rng.IntN(len(r.refs))]
}

// pickEnroll: one of the newest enrollments (so that activation, cancellation and the
// member's own cancellation race), or any.
func (r *finRun) pickEnroll(rng *rand.Rand) (finEnroll, bool) {
	r.poolMu.Lock()
	defer r.poolMu.Unlock()
	n := len(r.enrolls)
	if n == 0 {
		return finEnroll{}, false
	}
	if rng.IntN(100) < 60 {
		return r.enrolls[n-1-rng.IntN(min(n, 24))], true
	}
	return r.enrolls[rng.IntN(n)], true
}

// step performs one randomly chosen operation.
func (r *finRun) step(w int, rng *rand.Rand) {
	switch x := rng.IntN(1000); {
	case x < 330: // redeem any code: already redeemed, revoked, expired ones fail as they should
		r.opRedeem(rng, r.pickCode(rng))
	case x < 550: // the partner activates
		if e, ok := r.pickEnroll(rng); ok {
			r.opActivate(rng, e)
		}
	case x < 620: // the partner cancels
		if e, ok := r.pickEnroll(rng); ok {
			r.opCancel(rng, e)
		}
	case x < 680: // the member cancels with the code from the letter
		if e, ok := r.pickEnroll(rng); ok {
			r.opCancelOwn(rng, e)
		}
	case x < 760: // the operator revokes a subject's live code
		r.opRevoke(rng, r.pickRef(rng))
	case x < 840: // the operator reissues and exports the new letter
		r.opReissue(rng, r.pickRef(rng))
	case x < 880: // several calls on one person at the same instant
		r.collide(rng)
	case x < 930: // finance reads the counts while everything moves
		r.readCounts(w)
	default: // a person checks their status: reads must not disturb anything
		_, err := r.h.redeem.GetEnrollmentStatus(context.Background(), &enrollv1.GetEnrollmentStatusRequest{Code: r.pickCode(rng)})
		r.record("GetEnrollmentStatus", err, nil)
	}
}

// collide fires three to five calls at one hot subject at once: reissues, revocations, the
// redemption of its newest code, and activation or cancellation of its newest enrollment.
func (r *finRun) collide(rng *rand.Rand) {
	r.poolMu.Lock()
	ref := r.hot[rng.IntN(len(r.hot))]
	code := r.latest[ref]
	e, enrolled := r.enrollOf[ref]
	r.poolMu.Unlock()
	n := 3 + rng.IntN(3)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		grng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		kind := rng.IntN(6)
		if !enrolled && kind >= 3 {
			kind = rng.IntN(3)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			switch kind {
			case 0:
				r.opReissue(grng, ref)
			case 1:
				r.opRevoke(grng, ref)
			case 2:
				r.opRedeem(grng, code)
			case 3:
				r.opActivate(grng, e)
			case 4:
				r.opCancel(grng, e)
			case 5:
				r.opCancelOwn(grng, e)
			}
		}()
	}
	close(gate)
	wg.Wait()
}

func (r *finRun) opRedeem(rng *rand.Rand, code string) {
	var enrolled finEnroll
	r.exec("RedeemCode", rng, []codes.Code{codes.AlreadyExists, codes.FailedPrecondition}, func(rid string) (string, error) {
		resp, err := r.h.redeem.RedeemCode(context.Background(), &enrollv1.RedeemCodeRequest{Code: code, RequestId: rid})
		if err == nil {
			if st := resp.GetEnrollment().GetState(); st != enrollv1.EnrollmentState_ENROLLMENT_STATE_PENDING {
				r.fail("RedeemCode returned a %v enrollment, want PENDING", st)
			}
			enrolled = finEnroll{resp.GetEnrollment().GetName(), code}
		}
		return resp.GetEnrollment().GetName(), err
	}, func() {
		r.redeemOK.Add(1)
		r.poolMu.Lock()
		r.enrolls = append(r.enrolls, enrolled)
		r.enrollOf[r.refOf[code]] = enrolled
		r.poolMu.Unlock()
	})
}

// opActivate activates as the partner, now and then with a member id already bound.
func (r *finRun) opActivate(rng *rand.Rand, e finEnroll) {
	member := "m-" + strings.TrimPrefix(e.name, "enrollments/")
	r.poolMu.Lock()
	if len(r.members) > 0 && rng.IntN(100) < 5 {
		member = r.members[rng.IntN(len(r.members))]
	}
	r.poolMu.Unlock()
	r.exec("ActivateEnrollment", rng, []codes.Code{codes.FailedPrecondition, codes.AlreadyExists}, func(rid string) (string, error) {
		var resp *enrollv1.ActivateEnrollmentResponse
		err := r.authed(r.partnerClient, r.partnerSecret, func(ctx context.Context) (err error) {
			resp, err = r.h.partner.ActivateEnrollment(ctx, &enrollv1.ActivateEnrollmentRequest{Name: e.name, MemberId: member, RequestId: rid})
			return err
		})
		if err == nil && resp.GetEnrollment().GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_ACTIVE {
			r.fail("ActivateEnrollment returned a %v enrollment, want ACTIVE", resp.GetEnrollment().GetState())
		}
		return resp.GetEnrollment().GetState().String() + " " + resp.GetEnrollment().GetMemberId(), err
	}, func() {
		r.actOK.Add(1)
		r.poolMu.Lock()
		r.members = append(r.members, member)
		r.poolMu.Unlock()
	})
}

func (r *finRun) opCancel(rng *rand.Rand, e finEnroll) {
	r.exec("CancelEnrollment", rng, []codes.Code{codes.FailedPrecondition}, func(rid string) (string, error) {
		var resp *enrollv1.CancelEnrollmentResponse
		err := r.authed(r.partnerClient, r.partnerSecret, func(ctx context.Context) (err error) {
			resp, err = r.h.partner.CancelEnrollment(ctx, &enrollv1.CancelEnrollmentRequest{Name: e.name, Reason: "member moved away", RequestId: rid})
			return err
		})
		return resp.GetEnrollment().GetState().String(), err
	}, func() { r.cancelOK.Add(1) })
}

func (r *finRun) opCancelOwn(rng *rand.Rand, e finEnroll) {
	r.exec("CancelOwnEnrollment", rng, []codes.Code{codes.FailedPrecondition}, func(rid string) (string, error) {
		resp, err := r.h.redeem.CancelOwnEnrollment(context.Background(), &enrollv1.CancelOwnEnrollmentRequest{Code: e.code, Reason: "changed my mind", RequestId: rid})
		return resp.GetEnrollment().GetName() + " " + resp.GetEnrollment().GetState().String(), err
	}, func() { r.cancelOK.Add(1) })
}

// opRevoke revokes a subject's live code as the operator; a subject without one (revoked,
// expired, never reissued) is NotFound, a redeemed one FailedPrecondition.
func (r *finRun) opRevoke(rng *rand.Rand, ref string) {
	r.exec("RevokeCode", rng, []codes.Code{codes.FailedPrecondition, codes.NotFound}, func(rid string) (string, error) {
		var resp *enrollv1.RevokeCodeResponse
		err := r.authed(r.h.adminID, r.h.adminSecret, func(ctx context.Context) (err error) {
			resp, err = r.h.admin.RevokeCode(ctx, &enrollv1.RevokeCodeRequest{Subject: "incidents/" + finIncident + "/subjects/" + ref, Reason: "reported stolen", RequestId: rid})
			return err
		})
		return resp.GetState().String(), err
	}, nil)
}

// opReissue reissues as the operator and exports the new letter into the pool.
func (r *finRun) opReissue(rng *rand.Rand, ref string) {
	var batch string
	r.exec("ReissueCode", rng, []codes.Code{codes.FailedPrecondition}, func(rid string) (string, error) {
		var resp *enrollv1.ReissueCodeResponse
		err := r.authed(r.h.adminID, r.h.adminSecret, func(ctx context.Context) (err error) {
			resp, err = r.h.admin.ReissueCode(ctx, &enrollv1.ReissueCodeRequest{Subject: "incidents/" + finIncident + "/subjects/" + ref, Reason: "letter returned", RequestId: rid})
			return err
		})
		batch = resp.GetBatch().GetName()
		return batch, err
	}, func() { r.reissueOK.Add(1) })
	if batch != "" {
		r.exportReissued(ref, batch)
	}
}

// exec runs one mutating call. One call in ten carries a request_id and is sent twice: the
// retry must return the stored outcome (same code, same result) and change nothing more.
// onOK runs once for a successful first call.
func (r *finRun) exec(op string, rng *rand.Rand, allowed []codes.Code, call func(rid string) (string, error), onOK func()) {
	retry := rng.IntN(10) == 0
	rid := ""
	if retry {
		r.clockMu.RLock()
		defer r.clockMu.RUnlock()
		rid = fmt.Sprintf("fin-%d-%d", r.seed, r.ridSeq.Add(1))
	}
	key, err := call(rid)
	r.record(op, err, allowed)
	if err == nil && onOK != nil {
		onOK()
	}
	if !retry {
		return
	}
	r.replays.Add(1)
	key2, err2 := call(rid)
	c1, c2 := status.Code(err), status.Code(err2)
	switch {
	case !finStored[c1]:
		// Not stored (the first call already counts as unexpected): the retry runs the call
		// again, a call of its own.
		r.record(op+" (retry)", err2, allowed)
		if err2 == nil && onOK != nil {
			onOK()
		}
	case c1 != c2 || key != key2 || (c1 != codes.OK && status.Convert(err).Message() != status.Convert(err2).Message()):
		r.fail("%s retried with request_id %s: first %v %q (%s), retry %v %q (%s); want the stored outcome",
			op, rid, c1, status.Convert(err).Message(), key, c2, status.Convert(err2).Message(), key2)
	}
}

// finStored are the outcomes the idempotency layer remembers (and replays).
var finStored = map[codes.Code]bool{
	codes.OK: true, codes.InvalidArgument: true, codes.NotFound: true, codes.AlreadyExists: true,
	codes.FailedPrecondition: true, codes.PermissionDenied: true, codes.OutOfRange: true,
}

// authed calls with a client's token. A jump of the fake clock can expire a token in
// flight; that one call is retried with a fresh token.
func (r *finRun) authed(id, secret string, call func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
		tok, epoch, err := r.token(id, secret, attempt > 0)
		if err != nil {
			return err
		}
		err = call(bearer(tok))
		if status.Code(err) == codes.Unauthenticated && r.epoch.Load() != epoch && attempt < 3 {
			continue
		}
		return err
	}
}

// token returns a bearer token for a client. The first for each client comes from the token
// endpoint (client credentials); after that, and after every clock jump, the run mints the
// same token the endpoint would (the server's key, issuer, audience and TTL, on its fake
// clock), because verifying a client secret is deliberately slow and some twenty jumps times
// three clients would spend most of the run in argon2.
func (r *finRun) token(id, secret string, fresh bool) (string, int64, error) {
	epoch := r.epoch.Load()
	r.tokMu.Lock()
	c, ok := r.toks[id]
	r.tokMu.Unlock()
	if !fresh && ok && c.epoch == epoch && r.h.clock.Now().Before(c.exp.Add(-time.Minute)) {
		return c.tok, c.epoch, nil
	}
	if !ok {
		resp, err := r.h.authc.Token(context.Background(), &enrollv1.TokenRequest{GrantType: "client_credentials", ClientId: id, ClientSecret: secret})
		r.record("Token", err, nil)
		if err != nil {
			return "", 0, err
		}
		c = finTok{tok: resp.GetAccessToken(), epoch: epoch, exp: r.h.clock.Now().Add(time.Duration(resp.GetExpiresIn()) * time.Second)}
	} else {
		tok, exp, err := r.minter.Issue(r.principals[id])
		if err != nil {
			r.fail("mint a token for %s: %v", id, err)
			return "", 0, err
		}
		c = finTok{tok: tok, epoch: epoch, exp: exp}
	}
	r.tokMu.Lock()
	r.toks[id] = c
	r.tokMu.Unlock()
	return c.tok, c.epoch, nil
}

// exportReissued fetches the reissued letter so the new code joins the pool.
func (r *finRun) exportReissued(ref, batch string) {
	var rows []*enrollv1.ExportedCode
	err := r.authed(r.h.adminID, r.h.adminSecret, func(ctx context.Context) error {
		stream, err := r.h.admin.ExportBatchCodes(ctx, &enrollv1.ExportBatchCodesRequest{Name: batch})
		if err != nil {
			return err
		}
		rows = rows[:0]
		for {
			chunk, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			rows = append(rows, chunk.GetCodes()...)
		}
	})
	r.record("ExportBatchCodes", err, nil)
	if err != nil {
		return
	}
	if len(rows) != 1 || rows[0].GetExternalRef() != ref {
		r.fail("export of reissued batch %s for %s: %d rows %v; want the one new code of %s", batch, ref, len(rows), rows, ref)
		return
	}
	r.addCode(ref, rows[0].GetCode(), false)
}

// readCounts reads GetCounts as finance, mid-run: no counter is ever negative (every change
// commits with its counter deltas), and the number of codes ever issued never goes down.
func (r *finRun) readCounts(w int) {
	var resp *enrollv1.GetCountsResponse
	err := r.authed(r.financeClient, r.financeSecret, func(ctx context.Context) (err error) {
		resp, err = r.h.reporting.GetCounts(ctx, &enrollv1.GetCountsRequest{Incident: "incidents/" + finIncident})
		return err
	})
	r.record("GetCounts", err, nil)
	if err != nil {
		return
	}
	c := finFromProto(resp.GetCodes(), resp.GetEnrollments())
	if c.negative() {
		r.fail("GetCounts mid-run shows a negative counter: %+v", c)
	}
	for _, cc := range resp.GetCohorts() {
		if x := finFromProto(cc.GetCodes(), cc.GetEnrollments()); x.negative() {
			r.fail("GetCounts mid-run shows a negative counter for %s: %+v", cc.GetCohort(), x)
		}
	}
	if prev, ok := r.seenIssued.Load(w); ok && c.codes.issued < prev.(int64) {
		r.fail("codes issued went down from %d to %d between two reads of one reader", prev, c.codes.issued)
	}
	r.seenIssued.Store(w, c.codes.issued)
}

// finWalk is how far the fake clock walks during the operations: the codes mailed at the
// start expire in the last third (30 to 38 days after issuance), while enrollments lapse
// (7 days) and run out (a month) all along.
const finWalk = 45 * 24 * time.Hour

// finPlanWalk spreads jumps over the operation numbers 1..ops: mostly hours, some days, a
// few of one to two weeks, scaled so they add up to finWalk.
func finPlanWalk(rng *rand.Rand, ops, jumps int) map[int64]time.Duration {
	ds := make([]time.Duration, jumps)
	var sum time.Duration
	for i := range ds {
		switch x := rng.IntN(100); {
		case x < 60:
			ds[i] = time.Duration(1+rng.IntN(12)) * time.Hour
		case x < 92:
			ds[i] = time.Duration(1+rng.IntN(3)) * 24 * time.Hour
		default:
			ds[i] = time.Duration(7+rng.IntN(8)) * 24 * time.Hour
		}
		ds[i] += time.Duration(rng.IntN(60)) * time.Minute
		sum += ds[i]
	}
	walk := map[int64]time.Duration{}
	for _, d := range ds {
		for {
			op := int64(1 + rng.IntN(ops))
			if _, taken := walk[op]; !taken {
				// In whole minutes: nanoseconds times nanoseconds would overflow.
				walk[op] = time.Duration(int64(d/time.Minute)*int64(finWalk/time.Minute)/int64(sum/time.Minute)) * time.Minute
				break
			}
		}
	}
	return walk
}

// jump moves the fake clock forward, then gives the server's sweeper a moment to record
// what fell due (the other workers keep going meanwhile).
func (r *finRun) jump(d time.Duration) {
	if d <= 0 {
		r.fail("the planned walk has a jump of %v; the clock only moves forward", d)
		return
	}
	r.clockMu.Lock()
	r.h.clock.Advance(d)
	r.epoch.Add(1)
	r.clockMu.Unlock()
	r.jumps.Add(1)
	r.advanced.Add(int64(d))
	r.sweepWaits.Add(1)
	if _, ok := r.waitSwept(3 * finSweepInterval); !ok {
		r.sweepWaitTimeouts.Add(1)
	}
}

// finDue is what the sweeper has yet to record at the fake clock's now.
type finDue struct{ codes, enrollments int64 }

func (r *finRun) due() (finDue, error) {
	now := r.h.clock.Now().UTC().Truncate(time.Microsecond)
	var d finDue
	if err := r.sql.Raw("SELECT COUNT(*) FROM codes WHERE state = ? AND redeem_by <= ?", "ISSUED", now).Scan(&d.codes).Error; err != nil {
		return d, err
	}
	err := r.sql.Raw("SELECT COUNT(*) FROM enrollments WHERE (state = ? AND activation_deadline <= ?) OR (state = ? AND coverage_end <= ?)",
		"PENDING", now, "ACTIVE", now).Scan(&d.enrollments).Error
	return d, err
}

// waitSwept waits until nothing is due at the fake clock's now: every sweep transaction that
// had something to do has committed.
func (r *finRun) waitSwept(timeout time.Duration) (finDue, bool) {
	deadline := time.Now().Add(timeout)
	for {
		d, err := r.due()
		if err != nil {
			r.fail("count rows due for the sweeper: %v", err)
			return d, false
		}
		if d == (finDue{}) {
			return d, true
		}
		if time.Now().After(deadline) {
			return d, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkpoint runs with every worker stopped: once the sweeper has caught up, nothing else
// writes, so the two reads behind Recount and the rows behind GetCounts are one state.
func (r *finRun) checkpoint(label string) finCounts {
	t := r.t
	t.Helper()
	if d, ok := r.waitSwept(30 * time.Second); !ok {
		t.Fatalf("%s: the sweeper did not record what fell due within 30s: %d codes, %d enrollments still due", label, d.codes, d.enrollments)
	}
	var rc *enrollv1.RecountResponse
	err := r.authed(r.financeClient, r.financeSecret, func(ctx context.Context) (err error) {
		rc, err = r.h.reporting.Recount(ctx, &enrollv1.RecountRequest{Incident: "incidents/" + finIncident})
		return err
	})
	if err != nil {
		t.Fatalf("%s: Recount: %v", label, err)
	}
	if len(rc.GetDifferences()) > 0 {
		var lines []string
		for _, d := range rc.GetDifferences() {
			lines = append(lines, fmt.Sprintf("%s %s %s: counter %d, rows %d", d.GetCohort(), d.GetKind(), d.GetState(), d.GetCounter(), d.GetActual()))
		}
		sort.Strings(lines)
		t.Errorf("%s: Recount reports %d differences (of %d counters):\n  %s", label, len(lines), rc.GetCountersChecked(), strings.Join(lines, "\n  "))
	}
	if rc.GetCountersChecked() == 0 {
		t.Errorf("%s: Recount checked no counters", label)
	}

	var gc *enrollv1.GetCountsResponse
	err = r.authed(r.financeClient, r.financeSecret, func(ctx context.Context) (err error) {
		gc, err = r.h.reporting.GetCounts(ctx, &enrollv1.GetCountsRequest{Incident: "incidents/" + finIncident})
		return err
	})
	if err != nil {
		t.Fatalf("%s: GetCounts: %v", label, err)
	}
	got := map[string]finCounts{"total": finFromProto(gc.GetCodes(), gc.GetEnrollments())}
	for _, c := range gc.GetCohorts() {
		got[c.GetCohort()] = finFromProto(c.GetCodes(), c.GetEnrollments())
	}
	want := r.rowCounts(label)
	for _, k := range finKeys(got, want) {
		if got[k] != want[k] {
			t.Errorf("%s: GetCounts %s = %+v; the rows say %+v", label, k, got[k], want[k])
		}
	}

	// What the callers saw succeed must be there exactly.
	total := want["total"]
	for _, c := range []struct {
		what      string
		got, want int64
	}{
		{"codes issued (mailed at issuance + reissued)", total.codes.issued, r.initialCodes + r.reissueOK.Load()},
		{"codes redeemed (successful RedeemCode)", total.codes.redeemed, r.redeemOK.Load()},
		{"enrollments (successful RedeemCode)", total.enr.sum(), r.redeemOK.Load()},
		{"enrollments cancelled (successful CancelEnrollment + CancelOwnEnrollment)", total.enr.cancelled, r.cancelOK.Load()},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s: %d, want %d", label, c.what, c.got, c.want)
		}
	}
	// Every activated enrollment is still ACTIVE, or EXPIRED, or CANCELLED (so are some never
	// activated).
	if n := total.enr.active + total.enr.expired + total.enr.cancelled; n < r.actOK.Load() {
		t.Errorf("%s: %d enrollments active, expired or cancelled, but %d activations succeeded", label, n, r.actOK.Load())
	}
	t.Logf("%s: %d counters equal their recount; codes %+v, enrollments %+v", label, rc.GetCountersChecked(), total.codes, total.enr)
	return total
}

// rowCounts counts the code and enrollment rows directly, not through the store.
func (r *finRun) rowCounts(label string) map[string]finCounts {
	out := map[string]finCounts{}
	type agg struct {
		CohortID string
		State    string
		N        int64
	}
	for _, table := range []string{"codes", "enrollments"} {
		var rows []agg
		if err := r.sql.Raw("SELECT cohort_id, state, COUNT(*) AS n FROM "+table+" WHERE incident_id = ? GROUP BY cohort_id, state", finIncident).
			Scan(&rows).Error; err != nil {
			r.t.Fatalf("%s: count %s: %v", label, table, err)
		}
		for _, row := range rows {
			for _, k := range []string{"total", "incidents/" + finIncident + "/cohorts/" + row.CohortID} {
				c := out[k]
				if !c.add(table, row.State, row.N) {
					r.t.Errorf("%s: %d %s rows in unknown state %q", label, row.N, table, row.State)
				}
				out[k] = c
			}
		}
	}
	return out
}

type finCodeCounts struct{ issued, outstanding, redeemed, expired, revoked int64 }

type finEnrCounts struct{ pending, active, expired, cancelled, lapsed int64 }

func (e finEnrCounts) sum() int64 { return e.pending + e.active + e.expired + e.cancelled + e.lapsed }

type finCounts struct {
	codes finCodeCounts
	enr   finEnrCounts
}

func (c *finCounts) add(table, state string, n int64) bool {
	if table == "codes" {
		c.codes.issued += n
		switch state {
		case "ISSUED":
			c.codes.outstanding += n
		case "REDEEMED":
			c.codes.redeemed += n
		case "EXPIRED":
			c.codes.expired += n
		case "REVOKED":
			c.codes.revoked += n
		default:
			return false
		}
		return true
	}
	switch state {
	case "PENDING":
		c.enr.pending += n
	case "ACTIVE":
		c.enr.active += n
	case "EXPIRED":
		c.enr.expired += n
	case "CANCELLED":
		c.enr.cancelled += n
	case "LAPSED":
		c.enr.lapsed += n
	default:
		return false
	}
	return true
}

func (c finCounts) negative() bool {
	for _, v := range []int64{c.codes.issued, c.codes.outstanding, c.codes.redeemed, c.codes.expired, c.codes.revoked,
		c.enr.pending, c.enr.active, c.enr.expired, c.enr.cancelled, c.enr.lapsed} {
		if v < 0 {
			return true
		}
	}
	return false
}

func finFromProto(c *enrollv1.CodeCounts, e *enrollv1.EnrollmentCounts) finCounts {
	return finCounts{
		codes: finCodeCounts{c.GetIssued(), c.GetOutstanding(), c.GetRedeemed(), c.GetExpired(), c.GetRevoked()},
		enr:   finEnrCounts{e.GetPending(), e.GetActive(), e.GetExpired(), e.GetCancelled(), e.GetLapsed()},
	}
}

func finKeys(a, b map[string]finCounts) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// record counts an outcome. OK and the listed codes are expected; anything else (Internal,
// Unknown, Unavailable, a NotFound for a code that exists...) is a failure.
func (r *finRun) record(op string, err error, allowed []codes.Code) {
	c := status.Code(err)
	r.statMu.Lock()
	defer r.statMu.Unlock()
	if r.stats[op] == nil {
		r.stats[op] = map[codes.Code]int{}
	}
	r.stats[op][c]++
	if c != codes.OK && !slices.Contains(allowed, c) {
		r.nUnexp++
		if len(r.unexpected) < 20 {
			r.unexpected = append(r.unexpected, fmt.Sprintf("%s: %v %q", op, c, status.Convert(err).Message()))
		}
	}
}

// fail records a broken promise seen by a worker; the test goroutine reports it.
func (r *finRun) fail(format string, args ...any) {
	r.statMu.Lock()
	defer r.statMu.Unlock()
	r.nUnexp++
	if len(r.unexpected) < 20 {
		r.unexpected = append(r.unexpected, fmt.Sprintf(format, args...))
	}
}

func (r *finRun) reportUnexpected() {
	r.statMu.Lock()
	defer r.statMu.Unlock()
	if r.nUnexp > 0 {
		// The server logs the cause of an Internal answer under its request id.
		var causes []string
		for _, line := range strings.Split(r.h.logs.String(), "\n") {
			if strings.Contains(line, `"msg":"internal error"`) && len(causes) < 5 {
				causes = append(causes, line)
			}
		}
		r.t.Errorf("%d unexpected outcomes, the first %d:\n  %s\nserver log, first internal errors:\n  %s", r.nUnexp, len(r.unexpected),
			strings.Join(r.unexpected, "\n  "), strings.Join(causes, "\n  "))
		r.nUnexp, r.unexpected = 0, nil
	}
}

func (r *finRun) logStats(engine string) {
	r.statMu.Lock()
	defer r.statMu.Unlock()
	var ops []string
	for op := range r.stats {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	var b strings.Builder
	for _, op := range ops {
		var parts []string
		for c, n := range r.stats[op] {
			parts = append(parts, fmt.Sprintf("%v=%d", c, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(&b, "\n  %-22s %s", op, strings.Join(parts, " "))
	}
	r.t.Logf("%s: outcomes:%s\n  jumps %d, sweep waits %d (%d longer than %v)", engine, b.String(),
		r.jumps.Load(), r.sweepWaits.Load(), r.sweepWaitTimeouts.Load(), 3*finSweepInterval)
}

// checkSweepLog reads the server's log: sweeps did the work (codes expired, enrollments
// ended), and a sweep that failed failed only because a row changed under it (it rolls back
// and the next sweep retries), never for another reason.
func (r *finRun) checkSweepLog() {
	var expired, ended, notices, failed int
	for _, line := range strings.Split(r.h.logs.String(), "\n") {
		switch {
		case strings.Contains(line, `"msg":"sweep"`):
			expired += finLogInt(line, "codes_expired")
			ended += finLogInt(line, "enrollments_ended")
			notices += finLogInt(line, "expiring_notices")
		case strings.Contains(line, `"msg":"sweep failed"`):
			failed++
			if !strings.Contains(line, "changed state during the sweep") {
				r.t.Errorf("sweep failed for a reason other than a concurrent change: %s", line)
			}
		}
	}
	r.t.Logf("sweeper: %d codes expired, %d enrollments lapsed or expired, %d expiring notices, %d sweeps rolled back and retried",
		expired, ended, notices, failed)
	if expired == 0 || ended == 0 {
		r.t.Errorf("the sweeper recorded %d code expiries and %d enrollment ends; the clock walk should have caused both", expired, ended)
	}
}

func finLogInt(line, key string) int {
	_, rest, ok := strings.Cut(line, `"`+key+`":`)
	if !ok {
		return 0
	}
	end := strings.IndexAny(rest, ",}")
	if end < 0 {
		return 0
	}
	n, _ := strconv.Atoi(rest[:end])
	return n
}

// finOpenSQL opens the test's database directly, to count rows without the store.
func finOpenSQL(t *testing.T, db gormstore.Config) *gorm.DB {
	t.Helper()
	var d gorm.Dialector
	switch db.Driver {
	case gormstore.DriverPostgres:
		d = postgres.Open(db.DSN)
	case gormstore.DriverSQLite:
		d = sqlite.Open("file:" + db.DSN + "?_busy_timeout=10000")
	default:
		t.Fatalf("no direct access for driver %s", db.Driver)
	}
	g, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := g.DB(); err == nil {
		sqlDB.SetMaxOpenConns(2)
		t.Cleanup(func() { _ = sqlDB.Close() })
	}
	return g
}
