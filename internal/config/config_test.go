package config

import (
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestProductionRequiresSecrets(t *testing.T) {
	t.Parallel()
	_, err := Load(nil, envOf(nil))
	if err == nil || !strings.Contains(err.Error(), "ENROLL_MASTER_KEY") || !strings.Contains(err.Error(), "--demo") {
		t.Fatalf("want an error naming the missing secrets, got %v", err)
	}
}

func TestDemoNeedsNoSecrets(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"--demo"}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeDemo || c.DBDSN != "enroll-demo.db" {
		t.Fatalf("demo config: %+v", c)
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"--demo", "--grpc-addr", "127.0.0.1:1", "--db-dsn", "x.db"},
		envOf(map[string]string{"ENROLL_GRPC_ADDR": "127.0.0.1:2", "ENROLL_HTTP_ADDR": "127.0.0.1:3", "ENROLL_TOKEN_TTL": "5m"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != "127.0.0.1:1" || c.HTTPAddr != "127.0.0.1:3" || c.DBDSN != "x.db" || c.TokenTTL.Minutes() != 5 {
		t.Fatalf("precedence wrong: %+v", c)
	}
}

func TestBadValues(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"ttl not a duration": {"ENROLL_TOKEN_TTL": "soon"},
		"ttl too long":       {"ENROLL_TOKEN_TTL": "2h"},
		"unknown driver":     {"ENROLL_DB_DRIVER": "mysql"},
	} {
		if _, err := Load([]string{"--demo"}, envOf(env)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPoolAndRedisSettings(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"--demo", "--db-max-idle-conns", "4", "--redis-key-prefix", "staging:limit:"},
		envOf(map[string]string{"ENROLL_DB_MAX_OPEN_CONNS": "30", "ENROLL_DB_MAX_IDLE_CONNS": "9", "ENROLL_DB_CONN_MAX_LIFETIME": "30m"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DBMaxOpenConns != 30 || c.DBMaxIdleConns != 4 || c.DBConnMaxLifetime.Minutes() != 30 || c.RedisKeyPrefix != "staging:limit:" {
		t.Fatalf("pool/redis settings: %+v", c)
	}
	if d := Default(); d.RedisKeyPrefix != "enroll:limit:" || d.DBMaxIdleConns != 0 || d.DBConnMaxLifetime != 0 {
		t.Fatalf("defaults changed: %+v", d)
	}
	for name, args := range map[string][]string{
		"negative open":       {"--db-max-open-conns", "-1"},
		"negative idle":       {"--db-max-idle-conns", "-2"},
		"negative lifetime":   {"--db-conn-max-lifetime", "-1s"},
		"empty prefix, redis": {"--redis-url", "redis://127.0.0.1:6379/0", "--redis-key-prefix", ""},
	} {
		if _, err := Load(append([]string{"--demo"}, args...), envOf(nil)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCORSOrigins(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"--demo"}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.CORSAllowedOrigins) != 0 {
		t.Fatalf("default CORS origins %v, want none", c.CORSAllowedOrigins)
	}
	c, err = Load([]string{"--demo"}, envOf(map[string]string{
		"ENROLL_CORS_ALLOWED_ORIGINS": " https://Partner.Example , http://localhost:3000/,https://partner.example",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.CORSAllowedOrigins, " "); got != "https://partner.example http://localhost:3000" {
		t.Fatalf("env origins normalised to %q", got)
	}
	c, err = Load([]string{"--demo", "--cors-allowed-origins", "https://flag.example"},
		envOf(map[string]string{"ENROLL_CORS_ALLOWED_ORIGINS": "https://env.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.CORSAllowedOrigins, " "); got != "https://flag.example" {
		t.Fatalf("flag should win over the environment, got %q", got)
	}
	for _, bad := range []string{"*", "null", "partner.example", "ftp://partner.example", "https://partner.example/enroll",
		"https://*.partner.example", "https://user@partner.example", "https://partner.example?x=1", "https://"} {
		_, err := Load([]string{"--demo", "--cors-allowed-origins", bad}, envOf(nil))
		if err == nil || !strings.Contains(err.Error(), "scheme://host") {
			t.Errorf("origin %q: got %v, want an error saying how to write an origin", bad, err)
		}
	}
	bad := Default()
	bad.Mode = ModeDemo
	bad.CORSAllowedOrigins = []string{"https://ok.example", "*"}
	if err := bad.Validate(); err == nil {
		t.Error("Validate accepted a wildcard origin set in code")
	}
}
func TestTLSSettings(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"--demo", "--tls-key", "k.pem", "--metrics-addr", "127.0.0.1:9102"},
		envOf(map[string]string{"ENROLL_TLS_CERT": "c.pem", "ENROLL_TLS_RELOAD_INTERVAL": "10s", "ENROLL_INSECURE": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.TLS() || c.TLSCert != "c.pem" || c.TLSKey != "k.pem" || c.TLSReloadInterval.Seconds() != 10 || !c.Insecure || c.MetricsAddr != "127.0.0.1:9102" {
		t.Fatalf("TLS settings not read: %+v", c)
	}
	if _, err := Load([]string{"--demo", "--tls-cert", "c.pem"}, envOf(nil)); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Fatalf("a certificate without a key: want an error naming --tls-key, got %v", err)
	}
	if _, err := Load([]string{"--demo"}, envOf(map[string]string{"ENROLL_INSECURE": "maybe"})); err == nil {
		t.Fatal("ENROLL_INSECURE=maybe accepted")
	}
}

type addr string

func (a addr) Network() string { return "tcp" }
func (a addr) String() string  { return string(a) }

func TestPlaintextOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	prod := Default()
	for _, c := range []struct {
		cfg  func(Config) Config
		addr string
		ok   bool
	}{
		{nil, "127.0.0.1:9090", true},
		{nil, "[::1]:9090", true},
		{nil, "[::]:9090", false},
		{nil, "0.0.0.0:9090", false},
		{nil, "10.0.0.5:9090", false},
		{func(c Config) Config { c.Insecure = true; return c }, "0.0.0.0:9090", true},
		{func(c Config) Config { c.Mode = ModeDemo; return c }, "[::]:9090", true},
		{func(c Config) Config { c.TLSCert, c.TLSKey = "c", "k"; return c }, "0.0.0.0:9090", true},
	} {
		cfg := prod
		if c.cfg != nil {
			cfg = c.cfg(cfg)
		}
		err := cfg.CheckTransport(addr("127.0.0.1:1"), addr(c.addr))
		if (err == nil) != c.ok {
			t.Errorf("%s (insecure %v, mode %s, tls %v): err %v, want ok=%v", c.addr, cfg.Insecure, cfg.Mode, cfg.TLS(), err, c.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "--tls-cert") || !strings.Contains(err.Error(), "--insecure")) {
			t.Errorf("the refusal should say what to pass: %v", err)
		}
	}
}
