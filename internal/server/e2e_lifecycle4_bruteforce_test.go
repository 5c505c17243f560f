package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/store/gormstore/gormtest"
)

// The guessing attack of the issue: up to 10,000 wrong codes in 60 s, stopped early once the
// attacker has been refused this many times in a row.
const (
	lc4AttackMax      = 10000
	lc4AttackFor      = 60 * time.Second
	lc4AttackGiveUp   = 200
	lc4Budget         = 50
	lc4BudgetSpec     = "50/1m"
	lc4AttackerIP     = "127.0.0.2"
	lc4OwnerIP        = "127.0.0.3"
	lc4RedeemNotFound = `"method":"/enroll.v1.RedemptionService/RedeemCode","code":"NotFound"`
)

// lc4RESTAttack sends wrong codes to RedeemCode one after another, each through send (which
// picks the server and the spoofed headers), and sprinkles typos that must stay 400. It
// returns how many were answered 404 and the last 429.
func lc4RESTAttack(t *testing.T, send func(i int, body map[string]any) httpResp) (notFound, sent int, last429 httpResp) {
	t.Helper()
	consecutive, deadline := 0, time.Now().Add(lc4AttackFor)
	for ; sent < lc4AttackMax && consecutive < lc4AttackGiveUp && time.Now().Before(deadline); sent++ {
		if sent%20 == 0 {
			send(sent, map[string]any{"code": lc4Typo(t)}).wantError(t, fmt.Sprintf("typo %d of the attacker", sent), http.StatusBadRequest, "check the code")
		}
		r := send(sent, map[string]any{"code": lc4WrongCode(t)})
		switch r.status {
		case http.StatusNotFound:
			if consecutive > 0 || last429.status != 0 {
				t.Fatalf("guess %d: 404 after the attacker was throttled (the fake clock has not moved, nothing refilled)", sent)
			}
			notFound++
		case http.StatusTooManyRequests:
			if consecutive == 0 {
				lc4RetryAfter(t, fmt.Sprintf("guess %d", sent), r, "failed code attempts from your address")
			} else if r.header.Get("Retry-After") == "" {
				t.Fatalf("guess %d: 429 without Retry-After", sent)
			}
			consecutive++
			last429 = r
		default:
			t.Fatalf("guess %d: HTTP %d, want 404 or 429; body %s", sent, r.status, r.body)
		}
	}
	if consecutive < lc4AttackGiveUp {
		t.Fatalf("after %d guesses (%d answered 404) the attacker is not throttled: %d refusals in a row", sent, notFound, consecutive)
	}
	return notFound, sent, last429
}

// lc4SpoofHeaders rotates client-claimed forwarding headers: the attacker pretends to be someone
// else on most requests. The gateway appends the real peer, and only that counts.
func lc4SpoofHeaders(i int) []string {
	switch i % 3 {
	case 1:
		return []string{"X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256)}
	case 2:
		return []string{"Grpc-Metadata-X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i%256)}
	}
	return nil
}

// Brute force over REST: the attacker's failed look-ups stop at the per-address budget (429
// with Retry-After, the message says to wait), typos are free, spoofed forwarding headers do
// not help, and the rightful owner redeems from another address meanwhile.
func TestE2ELifecycle4BruteForceREST(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0, lc4CodeLimits(lc4BudgetSpec, lc4GenerousGlobal))
		s := seed(t, h, "bf-breach", "bf-monitor")
		attacker, owner := lc4From(t, h, lc4AttackerIP), lc4From(t, h, lc4OwnerIP)

		// Typos first, twice the budget: all 400, none counted.
		for i := range 2 * lc4Budget {
			attacker.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": lc4Typo(t)}).
				wantError(t, fmt.Sprintf("typo %d", i), http.StatusBadRequest, "check the code")
		}

		began := time.Now()
		notFound, sent, last := lc4RESTAttack(t, func(i int, body map[string]any) httpResp {
			return attacker.do(t, "POST", "/v1/redemption:redeem", "", body, lc4SpoofHeaders(i)...)
		})
		t.Logf("attack: %d guesses in %v, %d answered 404", sent, time.Since(began).Round(time.Millisecond), notFound)
		if notFound != lc4Budget {
			t.Fatalf("the attacker got %d answers 404, want exactly the budget %d (sequential, no refill)", notFound, lc4Budget)
		}
		if n := strings.Count(h.logs.String(), lc4RedeemNotFound); n != lc4Budget {
			t.Fatalf("the handler looked up %d unknown codes, want %d", n, lc4Budget)
		}

		// The owner, from another address, is not affected.
		owner.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": typed(s.codes["APP-0001"])}).ok(t, "owner checks the code")
		red := owner.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": s.codes["APP-0001"]}).ok(t, "owner redeems during the attack")
		if str(red, "enrollment", "state") != "ENROLLMENT_STATE_PENDING" {
			t.Fatalf("owner's redemption: %v", red)
		}
		// A wrong code from the owner's address is an honest miss, not a throttled one.
		owner.do(t, "POST", "/v1/redemption:status", "", map[string]any{"code": lc4WrongCode(t)}).
			wantError(t, "owner mistypes a whole code", http.StatusNotFound, "no such code")

		// The attacker's address, on a fresh connection and on every look-up method, stays
		// throttled; typos stay 400.
		again := lc4From(t, h, lc4AttackerIP)
		for _, path := range []string{"/v1/redemption:check", "/v1/redemption:redeem", "/v1/redemption:status", "/v1/redemption:cancel"} {
			lc4RetryAfter(t, "attacker at "+path, again.do(t, "POST", path, "", map[string]any{"code": lc4WrongCode(t)}), "from your address")
			again.do(t, "POST", path, "", map[string]any{"code": lc4Typo(t)}).wantError(t, "attacker's typo at "+path, http.StatusBadRequest, "check the code")
		}

		// Waiting as told buys exactly one more guess (50/1m refills one per 1.2 s).
		secs := lc4RetryAfter(t, "last refusal", last)
		h.clock.Advance(time.Duration(secs) * time.Second)
		attacker.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": lc4WrongCode(t)}).
			wantError(t, "the guess after waiting", http.StatusNotFound, "no such code")
		lc4RetryAfter(t, "the guess after that", attacker.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": lc4WrongCode(t)}))
	})
}

// Brute force over gRPC, with concurrent guesses on every look-up method: the misses stop at
// the budget plus at most the concurrency; refusals are RESOURCE_EXHAUSTED with RetryInfo; the
// owner redeems from another address meanwhile.
func TestE2ELifecycle4BruteForceGRPC(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0, lc4CodeLimits(lc4BudgetSpec, lc4GenerousGlobal))
		s := seed(t, h, "bfg-breach", "bfg-monitor")
		attacker, owner := lc4From(t, h, lc4AttackerIP), lc4From(t, h, lc4OwnerIP)
		bg := context.Background()

		calls := []func(code string) error{
			func(c string) error {
				_, err := attacker.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: c})
				return err
			},
			func(c string) error {
				_, err := attacker.redeem.CheckCode(bg, &enrollv1.CheckCodeRequest{Code: c})
				return err
			},
			func(c string) error {
				_, err := attacker.redeem.GetEnrollmentStatus(bg, &enrollv1.GetEnrollmentStatusRequest{Code: c})
				return err
			},
			func(c string) error {
				_, err := attacker.redeem.CancelOwnEnrollment(bg, &enrollv1.CancelOwnEnrollmentRequest{Code: c})
				return err
			},
		}
		const workers = 8
		var (
			sent, notFound, refused, consecutive atomic.Int64
			mu                                   sync.Mutex
			problems                             []string
			wg                                   sync.WaitGroup
		)
		problem := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			if len(problems) < 10 {
				problems = append(problems, fmt.Sprintf(format, args...))
			}
		}
		deadline := time.Now().Add(lc4AttackFor)
		began := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for consecutive.Load() < lc4AttackGiveUp && time.Now().Before(deadline) {
					i := sent.Add(1)
					if i > lc4AttackMax {
						return
					}
					if i%20 == 0 {
						if err := calls[i%4](lc4Typo(t)); status.Code(err) != codes.InvalidArgument {
							problem("typo on call %d: %v, want InvalidArgument", i%4, err)
						}
					}
					err := calls[i%4](lc4WrongCode(t))
					st, _ := status.FromError(err)
					switch st.Code() {
					case codes.NotFound:
						notFound.Add(1)
						consecutive.Store(0)
					case codes.ResourceExhausted:
						refused.Add(1)
						consecutive.Add(1)
						var delay time.Duration
						for _, d := range st.Details() {
							if ri, ok := d.(*errdetails.RetryInfo); ok {
								delay = ri.GetRetryDelay().AsDuration()
							}
						}
						if delay < time.Second || delay%time.Second != 0 {
							problem("RESOURCE_EXHAUSTED with retry delay %v, want whole seconds >= 1s", delay)
						}
						if want := fmt.Sprintf("try again in %d second", delay/time.Second); !strings.Contains(st.Message(), want) ||
							!strings.Contains(st.Message(), "from your address") {
							problem("RESOURCE_EXHAUSTED message %q; want it to say %q, about the address", st.Message(), want)
						}
					default:
						problem("guess on call %d: %v %q, want NotFound or ResourceExhausted", i%4, st.Code(), st.Message())
					}
				}
			}()
		}
		wg.Wait()
		t.Logf("attack: %d guesses in %v, %d NotFound, %d refused", min(sent.Load(), lc4AttackMax), time.Since(began).Round(time.Millisecond), notFound.Load(), refused.Load())
		if len(problems) > 0 {
			t.Fatalf("attack:\n%s", strings.Join(problems, "\n"))
		}
		if consecutive.Load() < lc4AttackGiveUp {
			t.Fatalf("the attacker is not throttled: %d NotFound, %d refusals in a row at the end", notFound.Load(), consecutive.Load())
		}
		if n := notFound.Load(); n < lc4Budget || n > lc4Budget+workers {
			t.Fatalf("the attacker got %d NotFound, want the budget %d plus at most the concurrency %d", n, lc4Budget, workers)
		}

		// The owner from another address; the attacker on a new connection stays refused.
		red, err := owner.redeem.RedeemCode(bg, &enrollv1.RedeemCodeRequest{Code: typed(s.codes["APP-0002"])})
		wantCode(t, "owner redeems during the attack", err, codes.OK)
		if red.GetEnrollment().GetState() != enrollv1.EnrollmentState_ENROLLMENT_STATE_PENDING {
			t.Fatalf("owner's redemption: %v", red)
		}
		_, err = lc4From(t, h, lc4AttackerIP).redeem.CheckCode(bg, &enrollv1.CheckCodeRequest{Code: lc4WrongCode(t)})
		wantCode(t, "attacker on a new connection", err, codes.ResourceExhausted, "try again in")
	})
}

// The global budget bounds a distributed attack: addresses that each stay under their own
// budget are refused together once all of them have used up the service's.
func TestE2ELifecycle4BruteForceGlobal(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		h := start(t, e, t0, lc4CodeLimits("10/1m", "25/1m"))
		misses := 0
		for _, ip := range []string{"127.0.0.4", "127.0.0.5", "127.0.0.6"} {
			p := lc4From(t, h, ip)
			for range 10 {
				r := p.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": lc4WrongCode(t)})
				switch r.status {
				case http.StatusNotFound:
					misses++
				case http.StatusTooManyRequests:
					lc4RetryAfter(t, "distributed guess from "+ip, r, "on this service")
				default:
					t.Fatalf("guess from %s: HTTP %d %s", ip, r.status, r.body)
				}
			}
		}
		if misses != 25 {
			t.Fatalf("three addresses got %d misses together, want the global budget 25", misses)
		}
		// Fresh addresses are refused too, told it is the service, not them.
		lc4RetryAfter(t, "a fourth address", lc4From(t, h, "127.0.0.7").do(t, "POST", "/v1/redemption:status", "", map[string]any{"code": lc4WrongCode(t)}), "on this service")
		// Typos are still answered as typos.
		h.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": lc4Typo(t)}).wantError(t, "typo during a global throttle", http.StatusBadRequest, "check the code")
	})
}

// The limit is shared through Redis: two replicas on one database and one Redis, the attacker
// alternating between them, get the budget once, not once per replica.
func TestE2ELifecycle4BruteForceSharedRedis(t *testing.T) {
	t.Parallel()
	url := os.Getenv("ENROLL_TEST_REDIS_URL")
	if url == "" {
		t.Skip("shared-limit test skipped: set ENROLL_TEST_REDIS_URL=redis://127.0.0.1:6379/0 to run it")
	}
	forEachEngine(t, func(t *testing.T, e gormtest.Engine) {
		// Far from today and from t0: the global budget's key is shared by every deployment on
		// this Redis, and GCRA state written by another run's clock must not be ahead of ours.
		at := time.Date(2036, 1, 31, 10, 0, 0, 0, time.UTC)
		h1 := start(t, e, at, lc4CodeLimits(lc4BudgetSpec, lc4GenerousGlobal), lc4Redis(url))
		s := seed(t, h1, "bfr-breach", "bfr-monitor")
		h2 := lc4Replica(t, h1)
		attackers := []*lc4Peer{lc4From(t, h1, lc4AttackerIP), lc4From(t, h2, lc4AttackerIP)}

		notFound, sent, _ := lc4RESTAttack(t, func(i int, body map[string]any) httpResp {
			return attackers[i%2].do(t, "POST", "/v1/redemption:redeem", "", body, lc4SpoofHeaders(i)...)
		})
		t.Logf("attack on two replicas: %d guesses, %d answered 404", sent, notFound)
		if notFound != lc4Budget {
			t.Fatalf("two replicas answered %d guesses 404 together, want the shared budget %d", notFound, lc4Budget)
		}
		n1, n2 := strings.Count(h1.logs.String(), lc4RedeemNotFound), strings.Count(h2.logs.String(), lc4RedeemNotFound)
		if n1+n2 != lc4Budget || n1 == 0 || n2 == 0 {
			t.Fatalf("look-ups of unknown codes: %d on the first replica, %d on the second; want %d together, on both", n1, n2, lc4Budget)
		}
		for i, a := range attackers {
			lc4RetryAfter(t, fmt.Sprintf("attacker on replica %d", i+1), a.do(t, "POST", "/v1/redemption:check", "", map[string]any{"code": lc4WrongCode(t)}), "from your address")
		}
		owner := lc4From(t, h2, lc4OwnerIP)
		owner.do(t, "POST", "/v1/redemption:redeem", "", map[string]any{"code": s.codes["PP-1001"]}).ok(t, "owner redeems on the second replica")
	})
}
