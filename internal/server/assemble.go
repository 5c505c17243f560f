package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/audit"
	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/clock"
	"github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/devkeys"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/idempotency"
	"github.com/idprotect/enroll/internal/identity"
	"github.com/idprotect/enroll/internal/issuance"
	"github.com/idprotect/enroll/internal/limits"
	"github.com/idprotect/enroll/internal/ratelimit"
	"github.com/idprotect/enroll/internal/service"
	"github.com/idprotect/enroll/internal/store/gormstore"
	"github.com/idprotect/enroll/internal/sweeper"
)

// transport is how the listeners are secured.
type transport struct {
	certs      *Certs       // nil: plaintext
	metricsLis net.Listener // nil: /metrics on the REST listener
}

// assembleTransport loads the certificate, binds the metrics listener and refuses plaintext
// where it is not allowed, before anything else is touched.
func assembleTransport(cfg config.Config, log *slog.Logger, grpcLis, httpLis net.Listener) (transport, error) {
	var tr transport
	if cfg.TLS() {
		c, err := LoadCerts(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			return tr, err
		}
		tr.certs = c
	}
	addrs := []net.Addr{grpcLis.Addr(), httpLis.Addr()}
	if cfg.MetricsAddr != "" {
		l, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return tr, fmt.Errorf("failed to listen for metrics on %s: %w", cfg.MetricsAddr, err)
		}
		tr.metricsLis = l
		addrs = append(addrs, l.Addr())
	}
	if err := cfg.CheckTransport(addrs...); err != nil {
		if tr.metricsLis != nil {
			_ = tr.metricsLis.Close()
		}
		return tr, err
	}
	if tr.certs == nil {
		for _, a := range addrs {
			if config.IsLoopback(a) {
				continue
			}
			why := "--insecure"
			if cfg.Mode == config.ModeDemo {
				why = "demo mode"
			}
			log.Warn("serving PLAINTEXT on a non-loopback address ("+why+"); codes, tokens and client secrets cross the network unencrypted unless a proxy in front terminates TLS", "addr", a.String())
		}
	}
	return tr, nil
}

// Assembled is a server ready to Serve, with what its caller needs to run and stop it.
type Assembled struct {
	*Server
	// Config is the effective configuration (demo secrets filled in).
	Config config.Config
	// Close releases the store; call it after Serve returns.
	Close func() error
}

// Assemble builds everything enrolld runs from a validated config: secrets, store (migrated),
// the bootstrap admin client, services and servers. clk is the clock for every deadline.
//
// /metrics is served on httpLis, or on its own listener bound here if cfg.MetricsAddr is set.
func Assemble(ctx context.Context, cfg config.Config, log *slog.Logger, clk clock.Clock, grpcLis, httpLis net.Listener) (*Assembled, error) {
	tr, err := assembleTransport(cfg, log, grpcLis, httpLis)
	if err != nil {
		return nil, err
	}
	app, err := assemble(ctx, cfg, log, clk, grpcLis, httpLis, tr)
	if err != nil && tr.metricsLis != nil {
		_ = tr.metricsLis.Close()
	}
	return app, err
}

func assemble(ctx context.Context, cfg config.Config, log *slog.Logger, clk clock.Clock, grpcLis, httpLis net.Listener, tr transport) (*Assembled, error) {
	if cfg.Mode == config.ModeDemo {
		if err := fillDemoSecrets(&cfg, log); err != nil {
			return nil, err
		}
	}
	keyring, err := codes.ParseKeyring(cfg.LookupKeys)
	if err != nil {
		return nil, fmt.Errorf("failed to parse ENROLL_LOOKUP_KEYS: %w", err)
	}
	master, err := codes.ParseMasterKey(cfg.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("failed to parse ENROLL_MASTER_KEY: %w", err)
	}
	idSecret, err := base64.StdEncoding.DecodeString(cfg.IdentityKey)
	if err != nil {
		return nil, fmt.Errorf("failed to parse ENROLL_IDENTITY_KEY: it must be base64")
	}
	hasher, err := identity.NewHasher(idSecret)
	if err != nil {
		return nil, fmt.Errorf("failed to parse ENROLL_IDENTITY_KEY: %w", err)
	}
	jwtKeys, err := auth.ParseSigningKeys(cfg.JWTKeys)
	if err != nil {
		return nil, fmt.Errorf("failed to parse ENROLL_JWT_KEYS: %w", err)
	}
	tokens, err := auth.NewTokens(auth.TokenConfig{Issuer: cfg.Issuer, Audience: cfg.Audience, TTL: cfg.TokenTTL, Keys: jwtKeys, Clock: clk})
	if err != nil {
		return nil, fmt.Errorf("failed to set up tokens: %w", err)
	}
	st, err := gormstore.Open(ctx, gormstore.Config{
		Driver: cfg.DBDriver, DSN: cfg.DBDSN, MaxOpenConns: cfg.DBMaxOpenConns,
		MaxIdleConns: cfg.DBMaxIdleConns, ConnMaxLifetime: cfg.DBConnMaxLifetime,
	})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Assembled, error) {
		_ = st.Close()
		return nil, err
	}
	metrics := NewMetrics()
	sqlDB, err := st.DB().DB()
	if err != nil {
		return fail(fmt.Errorf("failed to get the database handle: %w", err))
	}
	metrics.AddDB(sqlDB)
	hash, err := auth.HashSecret(cfg.BootstrapAdminSecret)
	if err != nil {
		return fail(fmt.Errorf("failed to hash the bootstrap admin secret: %w", err))
	}
	err = st.UpsertClient(ctx, &enrollment.Client{
		ID: cfg.BootstrapAdminID, Role: string(auth.RoleAdmin), DisplayName: "bootstrap admin (from configuration)",
		SecretHash: hash, CreateTime: clk.Now().UTC().Truncate(time.Microsecond),
	})
	if err != nil {
		return fail(fmt.Errorf("failed to store the bootstrap admin client: %w", err))
	}
	runner := issuance.New(issuance.Config{
		Store: st, Keyring: keyring, Master: master, Clock: clk, Log: log,
		LeaseTTL: cfg.BatchLeaseTTL, Chunk: cfg.IssueChunk, Progress: metrics.Progress(),
	})
	svcs, err := service.New(service.Deps{
		Store: st, Clock: clk, Keyring: keyring, MasterKey: master, Identity: hasher, Tokens: tokens, Logger: log,
		Issuer: runner,
	})
	if err != nil {
		return fail(err)
	}
	limiter, closeLimiter, err := newLimiter(ctx, cfg, clk)
	if err != nil {
		return fail(err)
	}
	lim := limits.Config{Limiter: limiter, AddressKey: deriveKey(idSecret, "client-address"), Log: log, Rejected: metrics.LimitRejected}
	for _, l := range []struct {
		dst  *ratelimit.Limit
		spec string
		name string
	}{
		{&lim.CodeFailuresPerAddress, cfg.LimitCodeFailuresPerAddress, "limit-code-failures-per-address"},
		{&lim.CodeFailuresGlobal, cfg.LimitCodeFailuresGlobal, "limit-code-failures-global"},
		{&lim.ResendPerAddress, cfg.LimitResendPerAddress, "limit-resend-per-address"},
		{&lim.PartnerCalls, cfg.LimitPartnerCalls, "limit-partner-calls"},
	} {
		if *l.dst, err = limits.ParseLimit(l.spec); err != nil {
			closeLimiter()
			return fail(fmt.Errorf("--%s: %w", l.name, err))
		}
	}
	// Besides every mutating call: the export that hands out plaintext codes.
	audited := audit.Audited{enrollv1.AdminService_ExportBatchCodes_FullMethodName: true}
	sweep := sweeper.New(sweeper.Config{Store: st, Clock: clk, Log: log, Interval: cfg.SweepInterval})
	srv, err := New(ctx, Options{
		Services: svcs, Tokens: tokens, Store: st, Logger: log,
		GRPCListener: grpcLis, HTTPListener: httpLis, ShutdownTimeout: cfg.ShutdownTimeout,
		CORSOrigins: cfg.CORSAllowedOrigins,
		// Limits first (a throttled call costs nothing further), then the audit record (so a
		// replayed retry is recorded as a call too), then idempotency.
		Unary: []grpc.UnaryServerInterceptor{
			limits.UnaryServerInterceptor(lim),
			audit.UnaryServerInterceptor(st, clk, audited),
			idempotency.UnaryServerInterceptor(st, clk, deriveKey(idSecret, "idempotency-fingerprint")),
		},
		Stream:  []grpc.StreamServerInterceptor{audit.StreamServerInterceptor(st, clk, audited)},
		Workers: []func(context.Context){runner.Run, sweep.Run},
		Metrics: metrics, MetricsListener: tr.metricsLis, Certs: tr.certs, TLSReloadInterval: cfg.TLSReloadInterval,
	})
	if err != nil {
		closeLimiter()
		return fail(err)
	}
	return &Assembled{Server: srv, Config: cfg, Close: func() error {
		closeLimiter()
		return st.Close()
	}}, nil
}

func fillDemoSecrets(cfg *config.Config, log *slog.Logger) error {
	s, created, err := devkeys.LoadOrCreate(cfg.DevKeysFile)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&cfg.LookupKeys, s.LookupKeys}, {&cfg.MasterKey, s.MasterKey}, {&cfg.IdentityKey, s.IdentityKey},
		{&cfg.JWTKeys, s.JWTKeys}, {&cfg.BootstrapAdminSecret, s.BootstrapAdminSecret},
	} {
		if *f.dst == "" {
			*f.dst = f.v
		}
	}
	verb := "using"
	if created {
		verb = "GENERATED"
	}
	log.Warn("DEMO MODE: "+verb+" development secrets from "+cfg.DevKeysFile+"; never use them for real data",
		"file", cfg.DevKeysFile)
	return nil
}

// newLimiter shares rate-limit state through Redis when configured (several replicas), or
// keeps it in process.
func newLimiter(ctx context.Context, cfg config.Config, clk clock.Clock) (ratelimit.Limiter, func(), error) {
	if cfg.RedisURL == "" {
		return ratelimit.NewMemory(clk), func() {}, nil
	}
	r, err := ratelimit.NewRedis(ctx, cfg.RedisURL, cfg.RedisKeyPrefix, clk)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to set up the Redis rate limiter: %w", err)
	}
	return r, func() { _ = r.Close() }, nil
}

// deriveKey derives a purpose-specific key from a configured secret, so one secret does not
// serve two purposes directly.
func deriveKey(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("enroll/" + purpose))
	return m.Sum(nil)
}
