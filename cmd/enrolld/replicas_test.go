package main

// Two replicas of enrolld on one PostgreSQL schema and one Redis, the production topology.
// The load goes to both at once; the assertions read the database and both APIs.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// The codes of the replica test, by what happens to them (index ranges of the export).
const (
	repRaced     = 2000 // [0, repRaced): each redeemed from both replicas at once
	repContested = 300  // the last repContested of those also have their deadline pass mid-load
	repIdle      = 500  // then repIdle codes nobody redeems, whose deadline passes mid-load
	repKill      = 1500 // then the codes redeemed while replica A is SIGKILLed
	repCodes     = repRaced + repIdle + repKill
	repLapse     = 300 // enrollments whose activation deadline passes while the partner activates
	repBudget    = 6   // unknown codes per address, shared through Redis
)

// TestProcessTwoReplicas runs two enrolld processes against one PostgreSQL schema and one
// Redis and spreads concurrent work over both:
//   - every code is redeemed from both replicas at the same moment: exactly one call succeeds,
//     the other is told ALREADY_EXISTS; deadlines pass for some of them mid-race;
//   - the partner activates the enrollments through both replicas while some activation
//     deadlines pass; both replicas run the sweeper every second;
//   - counters equal a recount (through both replicas' Recount and directly), the partner's
//     change feed read alternately from both is 1..n without a gap and says exactly what the
//     clients were told, and the failed-guess budget spent on one replica is spent on the other;
//   - replica A is SIGKILLed under load: every redemption answered OK is in the database,
//     calls to A fail UNAVAILABLE only, B keeps serving, and a client that retries on B
//     after UNAVAILABLE learns the outcome (OK, or ALREADY_EXISTS if A had committed).
func TestProcessTwoReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: two enrolld processes and several thousand redemptions")
	}
	redisURL := os.Getenv("ENROLL_TEST_REDIS_URL")
	if os.Getenv(gormtest.PostgresEnv) == "" || redisURL == "" {
		t.Skipf("two-replica test skipped: it needs a shared database and limiter; set %s=postgres://... and ENROLL_TEST_REDIS_URL=redis://127.0.0.1:6379/0", gormtest.PostgresEnv)
	}
	t.Parallel()
	began := time.Now()
	e := gormtest.Engine{Name: "postgres", Config: gormtest.Postgres}
	var salt [6]byte
	_, _ = rand.Read(salt[:])
	a := newDaemon(t, e,
		"--redis-url", redisURL, "--redis-key-prefix", "enroll-test:"+hex.EncodeToString(salt[:])+":",
		"--limit-code-failures-per-address", fmt.Sprintf("%d/1h", repBudget), "--db-max-open-conns", "8",
	)
	// Different sweep intervals, so the two sweepers' turns drift across each other instead
	// of one always asking first.
	b := a.replica("--sweep-interval", "1300ms")
	a.flags = append(a.flags, "--sweep-interval", "1s")
	// Both start on the empty schema at once: the migrations must serialise.
	a.launch()
	b.launch()
	a.ready()
	b.ready()
	elapsed(t, "starting two replicas on an empty schema", began)

	a.createIncident("rep", "all")
	path := writeSynthetic(t, repCodes, "all", "REP", 0)
	a.mustImport("rep", path, repCodes, 0)
	batch := b.issue("rep", "all")
	a.waitBatch(batch.GetName(), 2*time.Minute)
	codes := checkExport(t, b.export(batch.GetName()), "REP", repCodes)
	partner := newPartnerClient(t, a)
	st := a.openStore()
	keyring, err := enrollcodes.ParseKeyring(a.getenv("ENROLL_LOOKUP_KEYS"))
	if err != nil {
		t.Fatal(err)
	}
	hmacOf := func(code string) []byte { return codeHMAC(t, keyring, code) }
	replicas := []*daemon{a, b}
	elapsed(t, "setup (import, issuance and export of 4,000 codes)", began)

	// Phase 1: races for every code, deadlines passing for some of them meanwhile.
	phase := time.Now()
	contested := codes[repRaced-repContested : repRaced]
	idle := codes[repRaced : repRaced+repIdle]
	expire := append(slices.Clone(contested), idle...)
	mrand.Shuffle(len(expire), func(i, j int) { expire[i], expire[j] = expire[j], expire[i] })
	stopWaves := passDeadlines(t, len(expire), func(from, to int) {
		hs := make([][]byte, 0, to-from)
		for _, c := range expire[from:to] {
			hs = append(hs, hmacOf(c))
		}
		if err := st.DB().Exec("UPDATE codes SET redeem_by = ? WHERE code_hmac IN ? AND state = 'ISSUED'",
			time.Now().Add(-time.Second).UTC(), hs).Error; err != nil {
			t.Errorf("pass redeem-by deadlines: %v", err)
		}
	})
	order := mrand.Perm(repRaced)
	type answer struct {
		enrollment string
		codes      [2]grpccodes.Code
	}
	answers := make([]answer, repRaced)
	fails := forAll(repRaced, 12, func(k int) error {
		i := order[k]
		var wg sync.WaitGroup
		var errs [2]error
		var names [2]string
		for r, d := range replicas {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				resp, err := d.redeem.RedeemCode(ctx, &enrollv1.RedeemCodeRequest{Code: codes[i]})
				errs[r], names[r] = err, resp.GetEnrollment().GetName()
			})
		}
		wg.Wait()
		answers[i].codes = [2]grpccodes.Code{status.Code(errs[0]), status.Code(errs[1])}
		oks := 0
		for r := range 2 {
			switch status.Code(errs[r]) {
			case grpccodes.OK:
				oks++
				answers[i].enrollment = names[r]
			case grpccodes.AlreadyExists:
			case grpccodes.FailedPrecondition:
				if i < repRaced-repContested {
					return fmt.Errorf("replica %d: %v (no deadline passed for this code)", r, errs[r])
				}
			default:
				return fmt.Errorf("replica %d: %v", r, errs[r])
			}
		}
		if oks > 1 {
			return fmt.Errorf("both replicas redeemed code #%d", i)
		}
		if oks == 0 && i < repRaced-repContested {
			return fmt.Errorf("neither replica redeemed code #%d: %v / %v", i, errs[0], errs[1])
		}
		return nil
	})
	stopWaves()
	if len(fails) > 0 {
		t.Fatalf("%d of %d raced codes went wrong:%s", len(fails), repRaced, firstFailures(fails, 5))
	}
	var enrolled []string
	wonBy := [2]int{}
	for i, ans := range answers {
		if ans.enrollment != "" {
			enrolled = append(enrolled, ans.enrollment)
			if ans.codes[0] == grpccodes.OK {
				wonBy[0]++
			} else {
				wonBy[1]++
			}
		} else if i < repRaced-repContested {
			t.Fatalf("code #%d has no winner", i)
		}
	}
	contestedWon := len(enrolled) - (repRaced - repContested)
	t.Logf("phase 1: %d codes raced on two replicas in %v: A won %d, B won %d; %d of %d contested codes redeemed before their deadline passed",
		repRaced, time.Since(phase).Round(time.Millisecond), wonBy[0], wonBy[1], contestedWon, repContested)
	if wonBy[0] == 0 || wonBy[1] == 0 {
		t.Fatalf("one replica won every race (A %d, B %d): the load did not reach both", wonBy[0], wonBy[1])
	}

	// Phase 2: the partner activates through both replicas while activation deadlines pass.
	phase = time.Now()
	mrand.Shuffle(len(enrolled), func(i, j int) { enrolled[i], enrolled[j] = enrolled[j], enrolled[i] })
	lapsing := enrolled[:repLapse]
	stopWaves = passDeadlines(t, len(lapsing), func(from, to int) {
		ids := make([]string, 0, to-from)
		for _, n := range lapsing[from:to] {
			ids = append(ids, strings.TrimPrefix(n, "enrollments/"))
		}
		if err := st.DB().Exec("UPDATE enrollments SET activation_deadline = ? WHERE id IN ? AND state = 'PENDING'",
			time.Now().Add(-time.Second).UTC(), ids).Error; err != nil {
			t.Errorf("pass activation deadlines: %v", err)
		}
	})
	activated := make([]bool, len(enrolled))
	actOrder := mrand.Perm(len(enrolled))
	fails = forAll(len(enrolled), 12, func(k int) error {
		i := actOrder[k]
		ctx, cancel := context.WithTimeout(partner.ctx(), 30*time.Second)
		defer cancel()
		_, err := partner.on(replicas[k%2]).ActivateEnrollment(ctx, &enrollv1.ActivateEnrollmentRequest{
			Name: enrolled[i], MemberId: fmt.Sprintf("M-%06d", i),
		})
		switch status.Code(err) {
		case grpccodes.OK:
			activated[i] = true
			return nil
		case grpccodes.FailedPrecondition:
			if i < repLapse {
				return nil // its deadline passed first
			}
		}
		return fmt.Errorf("activate %s on replica %d: %v", enrolled[i], k%2, err)
	})
	stopWaves()
	if len(fails) > 0 {
		t.Fatalf("%d of %d activations went wrong:%s", len(fails), len(enrolled), firstFailures(fails, 5))
	}
	nActive := 0
	for _, ok := range activated {
		if ok {
			nActive++
		}
	}
	nLapsed := len(enrolled) - nActive
	t.Logf("phase 2: %d activations on two replicas in %v; %d enrollments lapsed first", nActive, time.Since(phase).Round(time.Millisecond), nLapsed)

	// The sweepers record every deadline that passed: each code redeemed by nobody expires,
	// each enrollment not activated lapses.
	nExpired := repIdle + repContested - contestedWon
	waitDB(t, st, "codes swept EXPIRED", "SELECT COUNT(*) FROM codes WHERE state = 'EXPIRED'", nExpired)
	waitDB(t, st, "enrollments swept LAPSED", "SELECT COUNT(*) FROM enrollments WHERE state = 'LAPSED'", nLapsed)
	checkDB(t, st, "codes REDEEMED", "SELECT COUNT(*) FROM codes WHERE state = 'REDEEMED'", len(enrolled))
	checkDB(t, st, "enrollments", "SELECT COUNT(*) FROM enrollments", len(enrolled))
	checkDB(t, st, "codes with two enrollments", "SELECT COUNT(*) FROM (SELECT code_id FROM enrollments GROUP BY code_id HAVING COUNT(*) > 1) x", 0)
	checkDB(t, st, "enrollments ACTIVE", "SELECT COUNT(*) FROM enrollments WHERE state = 'ACTIVE'", nActive)
	for i, ans := range answers {
		if ans.enrollment == "" {
			continue
		}
		var state string
		if err := st.DB().Raw("SELECT c.state FROM enrollments e JOIN codes c ON c.id = e.code_id WHERE e.id = ?",
			strings.TrimPrefix(ans.enrollment, "enrollments/")).Row().Scan(&state); err != nil || state != "REDEEMED" {
			t.Fatalf("code #%d was redeemed as %s, but the database says %q (%v)", i, ans.enrollment, state, err)
		}
	}
	logSweeps(t, replicas)
	for r, d := range replicas {
		checkRecount(t, d, fmt.Sprintf("replica %d after phase 2", r))
	}
	checkCounters(t, st, "rep", "after phase 2")
	counts := b.counts("rep")
	if c, en := counts.GetCodes(), counts.GetEnrollments(); c.GetRedeemed() != int64(len(enrolled)) || c.GetExpired() != int64(nExpired) ||
		en.GetActive() != int64(nActive) || en.GetLapsed() != int64(nLapsed) || en.GetPending() != 0 {
		t.Fatalf("GetCounts %v; the clients were told of %d redemptions, %d activations, and %d codes and %d enrollments passed their deadline",
			counts, len(enrolled), nActive, nExpired, nLapsed)
	}
	feed := readFeed(t, partner, replicas)
	checkFeed(t, feed, map[string]int{"enrollment.created": len(enrolled), "enrollment.activated": nActive, "enrollment.lapsed": nLapsed})

	// The failed-guess budget of one address is shared: spent alternately on both replicas, it
	// lasts repBudget guesses in all, not per replica, and then both refuse that address.
	guesser := metadata.Pairs("x-forwarded-for", "192.0.2.77")
	for k := range repBudget + 2 {
		d := replicas[k%2]
		guess, err := enrollcodes.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), guesser), 10*time.Second)
		_, err = d.redeem.CheckCode(ctx, &enrollv1.CheckCodeRequest{Code: guess.String()})
		cancel()
		want := grpccodes.NotFound
		if k >= repBudget {
			want = grpccodes.ResourceExhausted
		}
		if status.Code(err) != want {
			t.Fatalf("guess %d of one address on replica %d: %v; want %v (budget %d shared through Redis)", k+1, k%2, err, want, repBudget)
		}
	}

	// Phase 3: SIGKILL replica A in the middle of the redemption load.
	killCodes := codes[repRaced+repIdle:]
	var (
		answered atomic.Int64
		killedAt atomic.Int64 // unix nanos, 0 while A runs
		mu       sync.Mutex
		okOnB    = map[int]time.Time{}
		viaRetry int
		lost     int // committed by A, answer lost: ALREADY_EXISTS on B's retry
	)
	okCode := make([]bool, len(killCodes))
	done := make(chan map[int]error, 1)
	go func() {
		done <- forAll(len(killCodes), 12, func(i int) error {
			defer answered.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r := i % 2
			_, err := replicas[r].redeem.RedeemCode(ctx, &enrollv1.RedeemCodeRequest{Code: killCodes[i]})
			if r == 0 && status.Code(err) == grpccodes.Unavailable {
				if killedAt.Load() == 0 {
					// Unavailable is retryable by contract, but A is still up: say so.
					return fmt.Errorf("replica A answered UNAVAILABLE before it was killed: %v", err)
				}
				// The outcome on A is unknown: it may have committed before it died. Ask B.
				_, err = b.redeem.RedeemCode(ctx, &enrollv1.RedeemCodeRequest{Code: killCodes[i]})
				mu.Lock()
				viaRetry++
				if status.Code(err) == grpccodes.AlreadyExists {
					lost++
					err = nil
				}
				mu.Unlock()
				r = 1
			}
			if err != nil {
				return fmt.Errorf("replica %d: %v", r, err)
			}
			mu.Lock()
			okCode[i] = true
			if r == 1 {
				okOnB[i] = time.Now()
			}
			mu.Unlock()
			return nil
		})
	}()
	for answered.Load() < repKill/3 {
		time.Sleep(2 * time.Millisecond)
	}
	killedAt.Store(time.Now().UnixNano())
	a.kill()
	kill := time.Unix(0, killedAt.Load())
	t.Logf("phase 3: SIGKILLed replica A after %d of %d redemptions were answered", answered.Load(), repKill)
	fails = <-done
	if len(fails) > 0 {
		t.Fatalf("%d of %d redemptions during the kill failed with something other than a retryable error:%s", len(fails), repKill, firstFailures(fails, 5))
	}
	afterKill := 0
	for _, at := range okOnB {
		if at.After(kill) {
			afterKill++
		}
	}
	t.Logf("phase 3: %d calls to A answered UNAVAILABLE and were retried on B (%d of them A had committed); B answered %d redemptions after the kill",
		viaRetry, lost, afterKill)
	if afterKill == 0 || viaRetry == 0 {
		t.Fatalf("the kill did not land in the load: %d redemptions on B after it, %d retried from A", afterKill, viaRetry)
	}
	for i, ok := range okCode {
		if !ok {
			t.Fatalf("kill-phase code #%d has no answer", i)
		}
		var state string
		var n int
		if err := st.DB().Raw("SELECT c.state, COUNT(e.id) FROM codes c LEFT JOIN enrollments e ON e.code_id = c.id WHERE c.code_hmac = ? GROUP BY c.state",
			hmacOf(killCodes[i])).Row().Scan(&state, &n); err != nil || state != "REDEEMED" || n != 1 {
			t.Fatalf("kill-phase code #%d was answered OK, but the database has it %q with %d enrollments (%v)", i, state, n, err)
		}
	}
	checkDB(t, st, "enrollments after the kill", "SELECT COUNT(*) FROM enrollments", len(enrolled)+repKill)
	checkDB(t, st, "codes REDEEMED after the kill", "SELECT COUNT(*) FROM codes WHERE state = 'REDEEMED'", len(enrolled)+repKill)
	checkRecount(t, b, "replica B after the kill")
	checkCounters(t, st, "rep", "after the kill")
	checkFeed(t, readFeed(t, partner, []*daemon{b}),
		map[string]int{"enrollment.created": len(enrolled) + repKill, "enrollment.activated": nActive, "enrollment.lapsed": nLapsed})
	elapsed(t, "the two-replica test", began)
}

// passDeadlines moves deadlines into the past in waves while the load runs, the way time
// passes in production: apply(from, to) handles items [from, to) of n. It returns a function
// that finishes every remaining wave and waits for them.
func passDeadlines(t *testing.T, n int, apply func(from, to int)) (finish func()) {
	t.Helper()
	const waves = 12
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		per := (n + waves - 1) / waves
		for from := 0; from < n; from += per {
			select {
			case <-stop:
			case <-time.After(400 * time.Millisecond):
			}
			apply(from, min(from+per, n))
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

// waitDB waits up to 30s (the sweepers run every second or so) for a count to reach want.
func waitDB(t *testing.T, st *gormstore.Store, what, query string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := st.DB().Raw(query).Row().Scan(&n); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", what, n, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkDB(t *testing.T, st *gormstore.Store, what, query string, want int) {
	t.Helper()
	var n int
	if err := st.DB().Raw(query).Row().Scan(&n); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if n != want {
		t.Fatalf("%s: %d in the database, want %d", what, n, want)
	}
}

// checkRecount asks a replica's Recount RPC to compare every counter with a recount.
func checkRecount(t *testing.T, d *daemon, when string) {
	t.Helper()
	resp, err := d.reporting.Recount(d.ctx(), &enrollv1.RecountRequest{Incident: "incidents/rep"})
	if err != nil {
		t.Fatalf("%s: Recount: %v", when, err)
	}
	if len(resp.GetDifferences()) > 0 || resp.GetCountersChecked() == 0 {
		t.Fatalf("%s: Recount checked %d counters, differences: %v", when, resp.GetCountersChecked(), resp.GetDifferences())
	}
}

// logSweeps logs how the sweeps split between the replicas (informational: which replica
// takes the lease first after a deadline passes is up to the timers).
func logSweeps(t *testing.T, replicas []*daemon) {
	t.Helper()
	for r, d := range replicas {
		codes, enrollments := 0.0, 0.0
		for _, rec := range d.logRecords("sweep") {
			c, _ := rec["codes_expired"].(float64)
			e, _ := rec["enrollments_ended"].(float64)
			codes, enrollments = codes+c, enrollments+e
		}
		t.Logf("replica %d swept %v codes and %v enrollments", r, codes, enrollments)
	}
}

// partnerClient is a partner's API client: its token (from one replica) works on every
// replica, since they share the JWT signing keys.
type partnerClient struct {
	token string
}

func newPartnerClient(t *testing.T, d *daemon) *partnerClient {
	t.Helper()
	resp, err := d.admin.CreateClient(d.ctx(), &enrollv1.CreateClientRequest{Client: &enrollv1.Client{
		Role: enrollv1.Role_ROLE_PARTNER, Partner: "partners/monitor", DisplayName: "replica test",
	}})
	if err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	id := resp.GetClient().GetName()[len("clients/"):]
	tok, err := enrollv1.NewAuthServiceClient(d.conn).Token(context.Background(), &enrollv1.TokenRequest{
		GrantType: "client_credentials", ClientId: id, ClientSecret: resp.GetClientSecret(),
	})
	if err != nil {
		t.Fatalf("partner token: %v", err)
	}
	return &partnerClient{token: tok.GetAccessToken()}
}

func (p *partnerClient) ctx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+p.token)
}

func (p *partnerClient) on(d *daemon) enrollv1.PartnerServiceClient {
	return enrollv1.NewPartnerServiceClient(d.conn)
}

// readFeed reads the partner's whole change feed in small pages, taking turns between the
// replicas.
func readFeed(t *testing.T, p *partnerClient, replicas []*daemon) []*enrollv1.EnrollmentEvent {
	t.Helper()
	var all []*enrollv1.EnrollmentEvent
	after := int64(0)
	for page := 0; ; page++ {
		resp, err := p.on(replicas[page%len(replicas)]).ListEnrollmentEvents(p.ctx(), &enrollv1.ListEnrollmentEventsRequest{AfterSequence: after, PageSize: 250})
		if err != nil {
			t.Fatalf("ListEnrollmentEvents after %d: %v", after, err)
		}
		if len(resp.GetEvents()) == 0 {
			return all
		}
		all = append(all, resp.GetEvents()...)
		after = resp.GetEvents()[len(resp.GetEvents())-1].GetSequence()
	}
}

// checkFeed checks the feed numbers its events 1..n without a gap or a repeat, names each
// enrollment at most once per type, and has exactly the events the clients were told of.
func checkFeed(t *testing.T, feed []*enrollv1.EnrollmentEvent, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	seen := map[string]bool{}
	for i, ev := range feed {
		if ev.GetSequence() != int64(i+1) {
			t.Fatalf("feed event #%d has sequence %d: the feed has a gap or a repeat", i+1, ev.GetSequence())
		}
		key := ev.GetType() + " " + ev.GetResource()
		if seen[key] {
			t.Fatalf("feed repeats %s", key)
		}
		seen[key] = true
		got[ev.GetType()]++
	}
	types := make([]string, 0, len(got))
	for k := range got {
		types = append(types, k)
	}
	sort.Strings(types)
	for _, k := range types {
		if got[k] != want[k] {
			t.Fatalf("feed has %v events by type, want %v", got, want)
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("feed has %v events by type, want %v", got, want)
		}
	}
}
