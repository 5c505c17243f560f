package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Certs holds the serving certificate and swaps it when the files change, so a renewed
// certificate takes effect for new connections without a restart (connections already open
// keep the one they shook hands with).
//
// Changes are found by polling the files' modification time and size (Watch) and on demand
// (Reload, which enrolld calls on SIGHUP). Polling rather than inotify: certificate
// managers replace files by renaming (and Kubernetes secret volumes by swapping a symlink of
// the directory), which a watch on the file itself misses; a stat of two files a minute
// costs nothing and needs no dependency.
type Certs struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.RWMutex
	cur   *tls.Certificate
	prev  *tls.Certificate // served until the last reload; see LoopbackCredentials
	stamp [2]fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// LoadCerts reads the certificate and key; it fails if they do not parse or do not match.
func LoadCerts(certFile, keyFile string, log *slog.Logger) (*Certs, error) {
	c := &Certs{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads both files. On failure (a half-written file, a key that does not match) the
// current certificate stays in service and the error says why.
func (c *Certs) Reload() error {
	stamp, err := c.stat()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("failed to load TLS certificate %s with key %s: %w", c.certFile, c.keyFile, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || !bytes.Equal(c.cur.Leaf.Raw, pair.Leaf.Raw) {
		c.prev, c.cur = c.cur, &pair
		c.log.Info("tls: serving certificate loaded", "file", c.certFile, "subject", pair.Leaf.Subject.String(),
			"serial", pair.Leaf.SerialNumber.String(), "not_after", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c.stamp = stamp
	return nil
}

func (c *Certs) stat() ([2]fileStamp, error) {
	var out [2]fileStamp
	for i, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return out, fmt.Errorf("failed to read TLS file: %w", err)
		}
		out[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	return out, nil
}

// Watch reloads whenever either file's modification time or size changes, checking every
// interval, until ctx ends. A failed reload is logged and retried at the next check (the
// stamp is only recorded on success), so a certificate written before its key is picked up
// once both are in place.
func (c *Certs) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp, err := c.stat()
		c.mu.RLock()
		same := err == nil && stamp == c.stamp
		c.mu.RUnlock()
		if same {
			continue
		}
		if err := c.Reload(); err != nil {
			c.log.Error("tls: certificate files changed but cannot be loaded; still serving the previous certificate", "err", err)
		}
	}
}

// Current is the certificate new connections get.
func (c *Certs) Current() *tls.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cur
}

// ServerConfig is the listeners' TLS configuration.
func (c *Certs) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.Current(), nil
		},
	}
}

// LoopbackCredentials are for this process's own clients of its gRPC listener (the REST
// gateway, demo seeding), which dial a loopback address that the certificate need not name
// and whose issuer need not be in the system roots. Instead of chain and name verification
// they accept exactly the certificate this process serves (or served until the last reload,
// for a handshake that raced it): only the holder of its private key can complete that
// handshake, which is the assurance the chain check would give. InsecureSkipVerify is what
// turns off the default check so VerifyConnection can do this one, as crypto/tls documents.
func (c *Certs) LoopbackCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // replaced by the pin in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the server presented no certificate")
			}
			c.mu.RLock()
			defer c.mu.RUnlock()
			if c.served(cs.PeerCertificates[0]) {
				return nil
			}
			return errors.New("tls: the server's certificate is not the one this process serves")
		},
	})
}

func (c *Certs) served(leaf *x509.Certificate) bool {
	for _, s := range []*tls.Certificate{c.cur, c.prev} {
		if s != nil && bytes.Equal(s.Leaf.Raw, leaf.Raw) {
			return true
		}
	}
	return false
}

// loopbackCredentials are the transport credentials for dialling our own gRPC listener.
func loopbackCredentials(c *Certs) credentials.TransportCredentials {
	if c == nil {
		return insecure.NewCredentials()
	}
	return c.LoopbackCredentials()
}
