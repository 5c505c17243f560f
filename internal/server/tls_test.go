package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/idprotect/enroll/internal/server"
	"github.com/idprotect/enroll/internal/tlstest"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Watch picks up replaced files without a signal, keeps serving the old certificate while
// the new files do not load, and retries until they do.
func TestCertsWatchReloadsChangedFiles(t *testing.T) {
	dir := t.TempDir()
	first := tlstest.NewCA(t, "first CA").Issue(t, dir)
	logs := &syncBuffer{}
	c, err := server.LoadCerts(first.CertFile, first.KeyFile, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Current().Leaf.SerialNumber; got.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("serving serial %v, want %v", got, first.Cert.SerialNumber)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Watch(ctx, 10*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	tlstest.WriteFile(t, first.KeyFile, []byte("not a key"))
	eventually(t, "the failed reload to be logged", func() bool { return strings.Contains(logs.String(), "cannot be loaded") })
	if got := c.Current().Leaf.SerialNumber; got.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("a broken key replaced the certificate in service")
	}

	second := tlstest.NewCA(t, "second CA").Issue(t, dir)
	eventually(t, "the new certificate", func() bool { return c.Current().Leaf.SerialNumber.Cmp(second.Cert.SerialNumber) == 0 })
}

// The in-process client (the gateway) accepts exactly the certificate this process serves,
// or served until the last reload, and nothing else, whoever signed it.
func TestLoopbackCredentialsPinServedCertificate(t *testing.T) {
	ours, err := server.LoadCerts(issueIn(t, "ours"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := server.LoadCerts(issueIn(t, "other"))
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(serving *server.Certs) error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			if c, err := l.Accept(); err == nil {
				// As the gRPC listener does it (which also offers h2 by ALPN).
				_, _, _ = credentials.NewTLS(serving.ServerConfig()).ServerHandshake(c)
				_ = c.Close()
			}
		}()
		raw, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_, _, err = ours.LoopbackCredentials().ClientHandshake(context.Background(), "127.0.0.1", raw)
		return err
	}
	if err := handshake(ours); err != nil {
		t.Fatalf("our own certificate refused: %v", err)
	}
	if err := handshake(other); err == nil || !strings.Contains(err.Error(), "not the one this process serves") {
		t.Fatalf("another certificate accepted (err %v)", err)
	}
}

func issueIn(t *testing.T, name string) (string, string, *slog.Logger) {
	l := tlstest.NewCA(t, name).Issue(t, t.TempDir())
	return l.CertFile, l.KeyFile, slog.New(slog.NewTextHandler(io.Discard, nil))
}
