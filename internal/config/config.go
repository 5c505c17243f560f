// Package config loads the server configuration: defaults, then ENROLL_* environment
// variables, then command-line flags. Secrets (keys, the bootstrap admin secret) are read from
// the environment only, never from flags, so they do not show up in process listings.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Modes.
const (
	// ModeProduction requires every secret to be configured.
	ModeProduction = "production"
	// ModeDemo generates missing secrets into a local file and seeds a demo incident.
	ModeDemo = "demo"
)

// Config is everything enrolld needs to start.
type Config struct {
	Mode     string
	GRPCAddr string
	HTTPAddr string

	DBDriver       string
	DBDSN          string
	DBMaxOpenConns int
	// DBMaxIdleConns is how many pooled connections stay open between bursts; 0 means as
	// many as DBMaxOpenConns.
	DBMaxIdleConns int
	// DBConnMaxLifetime recycles connections after this age (0: never), so a replica's pool
	// follows a PostgreSQL failover or a connection pooler's rebalancing.
	DBConnMaxLifetime time.Duration

	// Secrets, environment only.
	LookupKeys           string // codes.ParseKeyring spec: "kid:base64,..." newest first
	MasterKey            string // codes.ParseMasterKey spec: "kid:base64"
	IdentityKey          string // base64, >= 32 bytes
	JWTKeys              string // auth.ParseSigningKeys spec: "kid:base64seed,..." first signs
	BootstrapAdminSecret string

	BootstrapAdminID string
	Issuer           string
	Audience         string
	TokenTTL         time.Duration
	DevKeysFile      string
	LogLevel         string
	ShutdownTimeout  time.Duration
	BatchLeaseTTL    time.Duration
	IssueChunk       int
	SweepInterval    time.Duration

	// RedisURL, when set, shares rate-limit state between replicas.
	RedisURL string
	// RedisKeyPrefix namespaces the limiter's keys: deployments sharing one Redis (staging
	// and production, or test runs) must not share budgets.
	RedisKeyPrefix string
	// Limits, as "N/duration".
	LimitCodeFailuresPerAddress string
	LimitCodeFailuresGlobal     string
	LimitResendPerAddress       string
	LimitPartnerCalls           string

	// CORSAllowedOrigins are the web origins (scheme://host[:port]) whose pages may call the
	// public redemption API from a browser. None by default.
	CORSAllowedOrigins []string
	// TLSCert and TLSKey are PEM files served on both listeners, re-read on SIGHUP and when
	// they change. Both or neither.
	TLSCert string
	TLSKey  string
	// TLSReloadInterval is how often the certificate files are checked for changes.
	TLSReloadInterval time.Duration
	// Insecure allows plaintext on a non-loopback address (behind a TLS-terminating proxy).
	Insecure bool
	// MetricsAddr, when set, serves /metrics on its own listener instead of the HTTP one.
	MetricsAddr string
}

// Default returns the safe defaults: production mode, loopback-friendly ports, an embedded
// SQLite file.
func Default() Config {
	return Config{
		Mode:             ModeProduction,
		GRPCAddr:         ":9090",
		HTTPAddr:         ":8080",
		DBDriver:         "sqlite",
		DBDSN:            "enroll.db",
		RedisKeyPrefix:   "enroll:limit:",
		BootstrapAdminID: "admin",
		Issuer:           "enrolld",
		Audience:         "enroll-api",
		TokenTTL:         15 * time.Minute,
		DevKeysFile:      "enroll-dev-keys.json",
		LogLevel:         "info",
		ShutdownTimeout:  20 * time.Second,
		BatchLeaseTTL:    30 * time.Second,
		IssueChunk:       5000,
		SweepInterval:    time.Minute,

		TLSReloadInterval: time.Minute,

		LimitCodeFailuresPerAddress: "20/10m",
		LimitCodeFailuresGlobal:     "2000/1m",
		LimitResendPerAddress:       "5/1h",
		LimitPartnerCalls:           "12000/1m",
	}
}

// Load builds the config from defaults, getenv and args (flags win over the environment).
func Load(args []string, getenv func(string) string) (Config, error) {
	c := Default()
	env := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	env("ENROLL_MODE", &c.Mode)
	env("ENROLL_GRPC_ADDR", &c.GRPCAddr)
	env("ENROLL_HTTP_ADDR", &c.HTTPAddr)
	env("ENROLL_DB_DRIVER", &c.DBDriver)
	env("ENROLL_DB_DSN", &c.DBDSN)
	env("ENROLL_LOOKUP_KEYS", &c.LookupKeys)
	env("ENROLL_MASTER_KEY", &c.MasterKey)
	env("ENROLL_IDENTITY_KEY", &c.IdentityKey)
	env("ENROLL_JWT_KEYS", &c.JWTKeys)
	env("ENROLL_BOOTSTRAP_ADMIN_SECRET", &c.BootstrapAdminSecret)
	env("ENROLL_BOOTSTRAP_ADMIN_ID", &c.BootstrapAdminID)
	env("ENROLL_ISSUER", &c.Issuer)
	env("ENROLL_AUDIENCE", &c.Audience)
	env("ENROLL_DEV_KEYS_FILE", &c.DevKeysFile)
	env("ENROLL_LOG_LEVEL", &c.LogLevel)
	env("ENROLL_REDIS_URL", &c.RedisURL)
	env("ENROLL_REDIS_KEY_PREFIX", &c.RedisKeyPrefix)
	env("ENROLL_LIMIT_CODE_FAILURES_PER_ADDRESS", &c.LimitCodeFailuresPerAddress)
	env("ENROLL_LIMIT_CODE_FAILURES_GLOBAL", &c.LimitCodeFailuresGlobal)
	env("ENROLL_LIMIT_RESEND_PER_ADDRESS", &c.LimitResendPerAddress)
	env("ENROLL_LIMIT_PARTNER_CALLS", &c.LimitPartnerCalls)
	corsOrigins := getenv("ENROLL_CORS_ALLOWED_ORIGINS")
	env("ENROLL_TLS_CERT", &c.TLSCert)
	env("ENROLL_TLS_KEY", &c.TLSKey)
	env("ENROLL_METRICS_ADDR", &c.MetricsAddr)
	var errs []error
	envInt := func(name string, dst *int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s must be an integer", name))
				return
			}
			*dst = n
		}
	}
	envDur := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s must be a duration such as 15m", name))
				return
			}
			*dst = d
		}
	}
	envInt("ENROLL_DB_MAX_OPEN_CONNS", &c.DBMaxOpenConns)
	envInt("ENROLL_DB_MAX_IDLE_CONNS", &c.DBMaxIdleConns)
	envDur("ENROLL_DB_CONN_MAX_LIFETIME", &c.DBConnMaxLifetime)
	envDur("ENROLL_TOKEN_TTL", &c.TokenTTL)
	envDur("ENROLL_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	envDur("ENROLL_BATCH_LEASE_TTL", &c.BatchLeaseTTL)
	envInt("ENROLL_ISSUE_CHUNK", &c.IssueChunk)
	envDur("ENROLL_SWEEP_INTERVAL", &c.SweepInterval)
	envDur("ENROLL_TLS_RELOAD_INTERVAL", &c.TLSReloadInterval)
	if v := getenv("ENROLL_INSECURE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, errors.New("ENROLL_INSECURE must be true or false"))
		}
		c.Insecure = b
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}

	fs := flag.NewFlagSet("enrolld", flag.ContinueOnError)
	demo := fs.Bool("demo", c.Mode == ModeDemo, "demo mode: generate missing secrets into --dev-keys-file, use enroll-demo.db, seed a demo incident")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC listen address (ENROLL_GRPC_ADDR)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "REST gateway listen address (ENROLL_HTTP_ADDR)")
	fs.StringVar(&c.DBDriver, "db-driver", c.DBDriver, "sqlite or postgres (ENROLL_DB_DRIVER)")
	dsn := fs.String("db-dsn", "", "SQLite file path or PostgreSQL URL (ENROLL_DB_DSN; default enroll.db, enroll-demo.db in demo mode)")
	fs.IntVar(&c.DBMaxOpenConns, "db-max-open-conns", c.DBMaxOpenConns, "connection pool size, 0 for the engine default (ENROLL_DB_MAX_OPEN_CONNS)")
	fs.IntVar(&c.DBMaxIdleConns, "db-max-idle-conns", c.DBMaxIdleConns, "pooled connections kept open when idle, 0 for all of --db-max-open-conns (ENROLL_DB_MAX_IDLE_CONNS)")
	fs.DurationVar(&c.DBConnMaxLifetime, "db-conn-max-lifetime", c.DBConnMaxLifetime, "close pooled connections older than this, 0 for never (ENROLL_DB_CONN_MAX_LIFETIME)")
	fs.StringVar(&c.BootstrapAdminID, "bootstrap-admin-id", c.BootstrapAdminID, "client id of the bootstrap admin; its secret comes from ENROLL_BOOTSTRAP_ADMIN_SECRET")
	fs.StringVar(&c.Issuer, "issuer", c.Issuer, "JWT issuer (ENROLL_ISSUER)")
	fs.StringVar(&c.Audience, "audience", c.Audience, "JWT audience (ENROLL_AUDIENCE)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", c.TokenTTL, "access token lifetime, at most 1h (ENROLL_TOKEN_TTL)")
	fs.StringVar(&c.DevKeysFile, "dev-keys-file", c.DevKeysFile, "demo mode only: where generated secrets are kept (ENROLL_DEV_KEYS_FILE)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (ENROLL_LOG_LEVEL)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long SIGTERM waits for in-flight calls (ENROLL_SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&c.BatchLeaseTTL, "batch-lease-ttl", c.BatchLeaseTTL, "how long an issuance batch stays with a replica that stopped making progress (ENROLL_BATCH_LEASE_TTL)")
	fs.IntVar(&c.IssueChunk, "issue-chunk", c.IssueChunk, "codes issued per transaction (ENROLL_ISSUE_CHUNK)")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", c.SweepInterval, "how often expired codes and enrollments are recorded (ENROLL_SWEEP_INTERVAL)")
	fs.StringVar(&c.RedisURL, "redis-url", c.RedisURL, "redis://host:port/db shared by replicas for rate limits; in-process limits if empty (ENROLL_REDIS_URL)")
	fs.StringVar(&c.RedisKeyPrefix, "redis-key-prefix", c.RedisKeyPrefix, "prefix of every limiter key in Redis; give each deployment sharing a Redis its own (ENROLL_REDIS_KEY_PREFIX)")
	fs.StringVar(&c.LimitCodeFailuresPerAddress, "limit-code-failures-per-address", c.LimitCodeFailuresPerAddress, "unknown codes one client address may try, N/duration (ENROLL_LIMIT_CODE_FAILURES_PER_ADDRESS)")
	fs.StringVar(&c.LimitCodeFailuresGlobal, "limit-code-failures-global", c.LimitCodeFailuresGlobal, "unknown codes all addresses together may try, N/duration (ENROLL_LIMIT_CODE_FAILURES_GLOBAL)")
	fs.StringVar(&c.LimitResendPerAddress, "limit-resend-per-address", c.LimitResendPerAddress, "lost-code requests per client address, N/duration (ENROLL_LIMIT_RESEND_PER_ADDRESS)")
	fs.StringVar(&c.LimitPartnerCalls, "limit-partner-calls", c.LimitPartnerCalls, "calls per partner client, N/duration (ENROLL_LIMIT_PARTNER_CALLS)")
	fs.StringVar(&corsOrigins, "cors-allowed-origins", corsOrigins, "comma-separated origins (https://partner.example) whose web pages may call the public redemption API; none if empty (ENROLL_CORS_ALLOWED_ORIGINS)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate (chain) served on both listeners; re-read on SIGHUP and when the file changes (ENROLL_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert (ENROLL_TLS_KEY)")
	fs.DurationVar(&c.TLSReloadInterval, "tls-reload-interval", c.TLSReloadInterval, "how often the certificate files are checked for changes (ENROLL_TLS_RELOAD_INTERVAL)")
	fs.BoolVar(&c.Insecure, "insecure", c.Insecure, "allow plaintext on non-loopback addresses, e.g. behind a TLS-terminating proxy (ENROLL_INSECURE)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "serve /metrics on this address instead of the REST listener (ENROLL_METRICS_ADDR)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	origins, err := ParseOrigins(corsOrigins)
	if err != nil {
		return c, err
	}
	c.CORSAllowedOrigins = origins
	if *demo {
		c.Mode = ModeDemo
		if getenv("ENROLL_DB_DSN") == "" && c.DBDriver == "sqlite" {
			c.DBDSN = "enroll-demo.db"
		}
	}
	if *dsn != "" {
		c.DBDSN = *dsn
	}
	return c, c.Validate()
}

// Validate checks the config. In production mode every secret must be present: starting
// with a made-up key would issue codes nobody can verify after a restart.
func (c Config) Validate() error {
	var errs []error
	switch c.Mode {
	case ModeProduction, ModeDemo:
	default:
		errs = append(errs, fmt.Errorf("mode must be %q or %q", ModeProduction, ModeDemo))
	}
	switch c.DBDriver {
	case "sqlite", "postgres":
	default:
		errs = append(errs, errors.New("db driver must be sqlite or postgres"))
	}
	if c.DBDSN == "" {
		errs = append(errs, errors.New("db dsn is required"))
	}
	if c.TokenTTL <= 0 || c.TokenTTL > time.Hour {
		errs = append(errs, errors.New("token ttl must be between 1s and 1h"))
	}
	if c.BatchLeaseTTL < time.Second {
		errs = append(errs, errors.New("batch lease ttl must be at least 1s"))
	}
	if c.SweepInterval < time.Second {
		errs = append(errs, errors.New("sweep interval must be at least 1s"))
	}
	if c.DBMaxOpenConns < 0 {
		errs = append(errs, errors.New("db max open conns must be 0 (engine default) or more"))
	}
	if c.DBMaxIdleConns < 0 {
		errs = append(errs, errors.New("db max idle conns must be 0 (as many as max open conns) or more"))
	}
	if c.DBConnMaxLifetime < 0 {
		errs = append(errs, errors.New("db conn max lifetime must be 0 (never) or a positive duration"))
	}
	if c.RedisURL != "" && c.RedisKeyPrefix == "" {
		errs = append(errs, errors.New("redis key prefix must not be empty when --redis-url is set: other data in that Redis could collide with limiter keys"))
	}
	if c.IssueChunk < 1 || c.IssueChunk > 50000 {
		errs = append(errs, errors.New("issue chunk must be between 1 and 50000"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: pass both (ENROLL_TLS_CERT, ENROLL_TLS_KEY) or neither"))
	}
	if c.TLSCert != "" && c.TLSReloadInterval < time.Second {
		errs = append(errs, errors.New("tls reload interval must be at least 1s"))
	}
	if c.Issuer == "" || c.Audience == "" {
		errs = append(errs, errors.New("issuer and audience are required"))
	}
	for _, o := range c.CORSAllowedOrigins {
		if _, err := parseOrigin(o); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Mode == ModeProduction {
		var missing []string
		for name, v := range map[string]string{
			"ENROLL_LOOKUP_KEYS": c.LookupKeys, "ENROLL_MASTER_KEY": c.MasterKey,
			"ENROLL_IDENTITY_KEY": c.IdentityKey, "ENROLL_JWT_KEYS": c.JWTKeys,
			"ENROLL_BOOTSTRAP_ADMIN_SECRET": c.BootstrapAdminSecret,
		} {
			if v == "" {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			errs = append(errs, fmt.Errorf("production mode needs these secrets in the environment: %s (or run with --demo to generate development secrets)", strings.Join(missing, ", ")))
		}
	}
	return errors.Join(errs...)
}

// ParseOrigins reads a comma-separated list of web origins, each exactly scheme://host[:port]
// as a browser sends it in the Origin header, and returns them in that form.
func ParseOrigins(list string) ([]string, error) {
	var out []string
	var errs []error
	for _, o := range strings.Split(list, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		norm, err := parseOrigin(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(out, norm) {
			out = append(out, norm)
		}
	}
	return out, errors.Join(errs...)
}

// parseOrigin checks one origin and returns it lower-cased with no trailing slash. A
// wildcard is refused: the list is an allow-list, and an operator who means "every site"
// should have to say which.
func parseOrigin(o string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("CORS origin %q %s; write it as scheme://host[:port], e.g. https://partner.example", o, why)
	}
	if o == "*" || o == "null" {
		return bad("is not allowed (list each origin)")
	}
	u, err := url.Parse(strings.TrimSuffix(o, "/"))
	if err != nil {
		return bad("is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("must start with https:// (or http://)")
	case u.Host == "" || u.Hostname() == "":
		return bad("has no host")
	case strings.Contains(u.Host, "*"):
		return bad("has a wildcard")
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return bad("has more than scheme, host and port")
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// TLS says whether the listeners serve TLS.
func (c Config) TLS() bool { return c.TLSCert != "" }

// PlaintextAllowed says whether a listener without TLS may bind addr: loopback always; any
// address with --insecure, or in demo mode (a laptop try-out, which warns instead).
func (c Config) PlaintextAllowed(addr net.Addr) bool {
	return c.Insecure || c.Mode == ModeDemo || IsLoopback(addr)
}

// IsLoopback says whether a bound address is on loopback only (":9090" and "[::]:9090" are
// every interface).
func IsLoopback(addr net.Addr) bool {
	host, _, err := net.SplitHostPort(addr.String())
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// CheckTransport refuses plaintext on a non-loopback address unless asked for: codes, tokens
// and client secrets travel in these requests.
func (c Config) CheckTransport(addrs ...net.Addr) error {
	if c.TLS() {
		return nil
	}
	for _, a := range addrs {
		if !c.PlaintextAllowed(a) {
			return fmt.Errorf("refusing to serve plaintext on %s, which is not a loopback address: pass --tls-cert and --tls-key (ENROLL_TLS_CERT, ENROLL_TLS_KEY), or --insecure (ENROLL_INSECURE=true) if a proxy in front terminates TLS", a)
		}
	}
	return nil
}
