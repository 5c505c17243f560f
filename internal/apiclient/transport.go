package apiclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Transport says how a client reaches enrolld.
type Transport struct {
	// TLS turns on TLS; CAFile implies it.
	TLS bool
	// CAFile is a PEM bundle of the CAs to trust instead of the system roots (a private CA).
	CAFile string
	// ServerName overrides the name checked against the certificate (default: the host of
	// the address dialled).
	ServerName string
}

// Credentials are the gRPC transport credentials for t: plaintext unless TLS or a CA file
// is given, and then full verification of the chain and the name, never skipped.
func (t Transport) Credentials() (credentials.TransportCredentials, error) {
	if !t.TLS && t.CAFile == "" {
		if t.ServerName != "" {
			return nil, errors.New("a TLS server name was given without --tls or --ca-file")
		}
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("failed to read the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the CA file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	return credentials.NewTLS(cfg), nil
}
