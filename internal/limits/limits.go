// Package limits protects the API from guessing and overuse: failed code look-ups are
// budgeted per client address and globally, lost-code requests per address, and partner
// clients have per-client quotas. Typos (caught by the check symbol) and right codes cost
// nothing, so an owner is not locked out by someone else's guessing from another address,
// until the global budget itself is spent: it is the bound on a distributed attack, and a
// right code cannot be told from a guess without the look-up it protects, so it is set well
// above legitimate traffic. Client addresses are only ever used as keyed HMACs.
package limits

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/idempotency"
	"github.com/idprotect/enroll/internal/ratelimit"
)

// Config sets the budgets.
type Config struct {
	Limiter ratelimit.Limiter
	// AddressKey keys the HMAC that turns a client address into a limiter key.
	AddressKey []byte
	// CodeFailuresPerAddress: unknown well-formed codes one address may try.
	CodeFailuresPerAddress ratelimit.Limit
	// CodeFailuresGlobal: unknown well-formed codes all addresses together may try, the
	// bound on a distributed guessing attack.
	CodeFailuresGlobal ratelimit.Limit
	// ResendPerAddress: lost-code requests per address.
	ResendPerAddress ratelimit.Limit
	// PartnerCalls: calls per partner client.
	PartnerCalls ratelimit.Limit
	Log          *slog.Logger
	// Rejected, if set, is told the name of each budget that refused a call (one of the
	// Limit* names), for metrics. Never anything about the caller.
	Rejected func(limit string)
}

// Budget names, as reported to Config.Rejected.
const (
	LimitCodeFailuresPerAddress = "code_failures_per_address"
	LimitCodeFailuresGlobal     = "code_failures_global"
	LimitResendPerAddress       = "resend_per_address"
	LimitPartnerCalls           = "partner_calls"
)

// codeLookups are the public methods that look a code up.
var codeLookups = map[string]bool{
	enrollv1.RedemptionService_CheckCode_FullMethodName:           true,
	enrollv1.RedemptionService_RedeemCode_FullMethodName:          true,
	enrollv1.RedemptionService_GetEnrollmentStatus_FullMethodName: true,
	enrollv1.RedemptionService_CancelOwnEnrollment_FullMethodName: true,
}

type codeRequest interface{ GetCode() string }

// UnaryServerInterceptor enforces the budgets. It sits after authentication (partner quotas
// need the principal).
func UnaryServerInterceptor(cfg Config) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		switch {
		case codeLookups[info.FullMethod]:
			return cfg.codeLookup(ctx, req, info, h)
		case info.FullMethod == enrollv1.RedemptionService_RequestCodeResend_FullMethodName:
			if err := cfg.spend(ctx, "resend:"+cfg.address(ctx), cfg.ResendPerAddress, LimitResendPerAddress, true, "lost-code requests from your address"); err != nil {
				return nil, err
			}
		case strings.HasPrefix(info.FullMethod, "/"+enrollv1.PartnerService_ServiceDesc.ServiceName+"/"):
			if p, ok := auth.PrincipalFrom(ctx); ok {
				if err := cfg.spend(ctx, "partner:"+p.ClientID, cfg.PartnerCalls, LimitPartnerCalls, false, "calls for this client"); err != nil {
					return nil, err
				}
			}
		}
		return h(ctx, req)
	}
}

func (cfg Config) codeLookup(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	cr, ok := req.(codeRequest)
	if !ok {
		return h(ctx, req)
	}
	if _, err := enrollcodes.Parse(cr.GetCode()); err != nil {
		// A typo: the handler rejects it without a look-up, so it is not a guess.
		return h(ctx, req)
	}
	addrKey := "codefail:" + cfg.address(ctx)
	for _, b := range []struct {
		key   string
		limit ratelimit.Limit
		name  string
		what  string
	}{
		{addrKey, cfg.CodeFailuresPerAddress, LimitCodeFailuresPerAddress, "failed code attempts from your address"},
		{"codefail:global", cfg.CodeFailuresGlobal, LimitCodeFailuresGlobal, "failed code attempts on this service"},
	} {
		d, err := cfg.Limiter.Peek(ctx, b.key, b.limit)
		if err != nil {
			return nil, cfg.unavailable(err)
		}
		if !d.Allowed {
			cfg.rejected(b.name)
			return nil, exhausted(b.what, d.RetryAfter)
		}
	}
	// A retry answered from the idempotency record repeats an earlier outcome without a
	// look-up; its miss was counted the first time.
	ctx, replayed := idempotency.TrackReplay(ctx)
	resp, err := h(ctx, req)
	if status.Code(err) == codes.NotFound && !replayed() {
		// Only a miss is a guess. The budget is spent after the fact, so concurrent misses
		// from one address can overshoot it by at most their concurrency.
		for _, b := range []struct {
			key   string
			limit ratelimit.Limit
		}{{addrKey, cfg.CodeFailuresPerAddress}, {"codefail:global", cfg.CodeFailuresGlobal}} {
			if _, lerr := cfg.Limiter.Allow(ctx, b.key, b.limit); lerr != nil {
				cfg.Log.Warn("limits: failed to record a failed code attempt", "err", lerr)
			}
		}
	}
	return resp, err
}

// spend takes one event from a budget. failClosed decides what a limiter outage means:
// public endpoints refuse (an outage must not lift the brute-force limits), partner quotas
// let calls through.
func (cfg Config) spend(ctx context.Context, key string, l ratelimit.Limit, name string, failClosed bool, what string) error {
	d, err := cfg.Limiter.Allow(ctx, key, l)
	if err != nil {
		if failClosed {
			return cfg.unavailable(err)
		}
		cfg.Log.Warn("limits: limiter unavailable; allowing the call", "err", err)
		return nil
	}
	if !d.Allowed {
		cfg.rejected(name)
		return exhausted(what, d.RetryAfter)
	}
	return nil
}

func (cfg Config) rejected(name string) {
	if cfg.Rejected != nil {
		cfg.Rejected(name)
	}
}

func (cfg Config) unavailable(err error) error {
	cfg.Log.Error("limits: limiter unavailable; refusing public call", "err", err)
	st, _ := status.New(codes.Unavailable, "the service is busy; try again in a minute").
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Minute)})
	return st.Err()
}

// exhausted is RESOURCE_EXHAUSTED with RetryInfo; the gateway turns it into HTTP 429 with
// Retry-After.
func exhausted(what string, retry time.Duration) error {
	secs := int64(math.Ceil(retry.Seconds()))
	if secs < 1 {
		secs = 1
	}
	st, _ := status.New(codes.ResourceExhausted, fmt.Sprintf("too many %s; try again in %d seconds", what, secs)).
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(secs) * time.Second)})
	return st.Err()
}

// address is the keyed HMAC of the caller's IP address. Calls through the REST gateway come
// from loopback and carry the browser's address as the last X-Forwarded-For entry, which the
// gateway itself appends (earlier entries are whatever the client claimed and are ignored).
func (cfg Config) address(ctx context.Context) string {
	ip := ""
	if p, ok := peer.FromContext(ctx); ok {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			ip = host
		}
	}
	if parsed := net.ParseIP(ip); parsed != nil && parsed.IsLoopback() {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if xff := md.Get("x-forwarded-for"); len(xff) > 0 {
				parts := strings.Split(xff[len(xff)-1], ",")
				if last := strings.TrimSpace(parts[len(parts)-1]); net.ParseIP(last) != nil {
					ip = last
				}
			}
		}
	}
	m := hmac.New(sha256.New, cfg.AddressKey)
	m.Write([]byte(ip))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// ParseLimit reads "N/duration" (e.g. "20/10m"): N events per duration, bursts of N.
func ParseLimit(s string) (ratelimit.Limit, error) {
	n, per, ok := strings.Cut(s, "/")
	var l ratelimit.Limit
	if !ok {
		return l, errors.New("a limit looks like 20/10m (events per duration)")
	}
	if _, err := fmt.Sscanf(n, "%d", &l.Rate); err != nil || l.Rate <= 0 {
		return l, errors.New("a limit's count must be a positive integer, as in 20/10m")
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return l, errors.New("a limit's period must be a duration, as in 20/10m")
	}
	l.Per, l.Burst = d, l.Rate
	return l, nil
}
