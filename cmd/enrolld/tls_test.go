package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/devkeys"
	"github.com/idprotect/enroll/internal/tlstest"
)

// tlsServed is the serial of the certificate a new HTTPS connection to addr gets from a
// client trusting only pool, or an error.
func httpsServes(pool *x509.CertPool, addr string) (*big.Int, error) {
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// grpcServes checks health over a new gRPC connection trusting only pool and returns the
// serial of the certificate it got.
func grpcServes(t *testing.T, pool *x509.CertPool, addr string) (*big.Int, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		return nil, err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over TLS: %v", resp.GetStatus())
	}
	return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber, nil
}

// token gets an access token through the REST gateway, which calls the gRPC listener over
// TLS itself.
func httpsToken(t *testing.T, c *http.Client, base, id, secret string) {
	t.Helper()
	body := `{"grant_type":"client_credentials","client_id":"` + id + `","client_secret":"` + secret + `"}`
	resp, err := c.Post(base+"/v1/token", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST /v1/token over HTTPS: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		t.Fatalf("POST /v1/token over HTTPS: HTTP %d, err %v", resp.StatusCode, err)
	}
}

func httpsClient(pool *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// Both listeners serve TLS from the files; the gateway and demo seeding reach gRPC over it;
// after the files are replaced with a certificate from another CA, SIGHUP makes new
// connections get it without a restart.
func TestTLSServesAndReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	ca1 := tlstest.NewCA(t, "first CA")
	first := ca1.Issue(t, dir)
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	keys := filepath.Join(dir, "keys.json")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuf
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--demo", "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
			"--db-dsn", filepath.Join(dir, "demo.db"), "--dev-keys-file", keys,
			"--tls-cert", first.CertFile, "--tls-key", first.KeyFile},
			func(string) string { return "" }, &out, &errb)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if t.Failed() {
			t.Logf("log:\n%s", errb.String())
		}
	})
	// Demo seeding goes through the gRPC listener with the loopback credentials.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "DEMO DATA") {
		if time.Now().After(deadline) {
			t.Fatalf("demo never printed its sheet over TLS")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "https://") {
		t.Errorf("the demo sheet should point at https://; got:\n%s", out.String())
	}
	secrets, _, err := devkeys.LoadOrCreate(keys)
	if err != nil {
		t.Fatal(err)
	}

	serial, err := grpcServes(t, ca1.Pool(), grpcAddr)
	if err != nil || serial.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("gRPC over TLS: serial %v, err %v; want %v", serial, err, first.Cert.SerialNumber)
	}
	c1 := httpsClient(ca1.Pool())
	httpsToken(t, c1, "https://"+httpAddr, "admin", secrets.BootstrapAdminSecret)
	// Plaintext is not answered as an API call on either listener.
	if resp, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plaintext HTTP answered 200 on the TLS listener")
		}
	}

	ca2 := tlstest.NewCA(t, "second CA")
	second := ca2.Issue(t, dir)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		s, err := httpsServes(ca2.Pool(), httpAddr)
		if err == nil && s.Cmp(second.Cert.SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the HTTPS listener still does not serve the new certificate (serial %v, err %v)", s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if serial, err := grpcServes(t, ca2.Pool(), grpcAddr); err != nil || serial.Cmp(second.Cert.SerialNumber) != 0 {
		t.Fatalf("gRPC after reload: serial %v, err %v; want %v", serial, err, second.Cert.SerialNumber)
	}
	if _, err := httpsServes(ca1.Pool(), httpAddr); err == nil {
		t.Fatal("a client trusting only the first CA still connects: the old certificate is still served")
	}
	// The gateway still reaches gRPC (a new HTTPS connection, through the gateway's pinned
	// connection).
	httpsToken(t, httpsClient(ca2.Pool()), "https://"+httpAddr, "admin", secrets.BootstrapAdminSecret)
	if !strings.Contains(errb.String(), "SIGHUP: TLS certificate files re-read") {
		t.Errorf("the reload was not logged")
	}
}

// Production refuses plaintext on an address other than loopback unless --insecure says so.
func TestPlaintextOnlyOnLoopbackUnlessInsecure(t *testing.T) {
	t.Parallel()
	jwtKey, err := auth.GenerateSigningKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"ENROLL_LOOKUP_KEYS": "lk1:" + random32(t), "ENROLL_MASTER_KEY": "mk1:" + random32(t),
		"ENROLL_IDENTITY_KEY": random32(t), "ENROLL_JWT_KEYS": auth.EncodeSigningKey(jwtKey),
		"ENROLL_BOOTSTRAP_ADMIN_SECRET": random32(t),
	}
	db := filepath.Join(t.TempDir(), "enroll.db")
	args := []string{"--grpc-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0", "--db-dsn", db}
	var out, errb syncBuf
	err = run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("want a refusal naming --tls-cert and --insecure, got %v", err)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("the database was opened before the refusal (stat: %v)", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(args, "--insecure"), func(k string) string { return env[k] }, &out, &errb)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errb.String(), `"msg":"serving"`) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("--insecure did not start; log:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run --insecure: %v", err)
	}
	if !strings.Contains(errb.String(), "PLAINTEXT") {
		t.Errorf("--insecure on a non-loopback address must warn; log:\n%s", errb.String())
	}
}
