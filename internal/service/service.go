// Package service implements the gRPC services: it turns requests into domain calls and
// domain results into responses. Handlers return domain errors; the innermost link of the
// interceptor chain (ErrorMapping, errors.go) maps them to gRPC status codes in one place.
// It holds no state of its own beyond its dependencies.
package service

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/clock"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/identity"
	"github.com/idprotect/enroll/internal/store"
)

// Deps are what the services need. All fields are required.
type Deps struct {
	Store     store.Store
	Clock     clock.Clock
	Keyring   *enrollcodes.Keyring
	MasterKey *enrollcodes.MasterKey
	Identity  *identity.Hasher
	Tokens    *auth.Tokens
	Logger    *slog.Logger
	// Issuer is woken when a batch is created (the background issuance runner).
	Issuer interface{ Notify() }
}

// Services bundles one implementation of each gRPC service over shared dependencies.
type Services struct {
	Admin      *AdminServer
	Redemption *RedemptionServer
	Partner    *PartnerServer
	Reporting  *ReportingServer
	Auth       *AuthServer
}

// New builds the services.
func New(d Deps) (*Services, error) {
	if d.Store == nil || d.Clock == nil || d.Keyring == nil || d.MasterKey == nil || d.Identity == nil || d.Tokens == nil || d.Logger == nil || d.Issuer == nil {
		return nil, errors.New("service: every dependency is required")
	}
	b := &base{d}
	return &Services{
		Admin:      &AdminServer{base: b},
		Redemption: &RedemptionServer{base: b},
		Partner:    &PartnerServer{base: b},
		Reporting:  &ReportingServer{base: b},
		Auth:       &AuthServer{base: b},
	}, nil
}

type base struct{ Deps }

// now is the injected clock truncated to microseconds, the precision PostgreSQL keeps, so a
// value written and read back compares equal on both engines.
func (b *base) now() time.Time { return b.Clock.Now().UTC().Truncate(time.Microsecond) }

func isDomain(err error) bool {
	var de *enrollment.Error
	return errors.As(err, &de)
}

// parseName checks name has the form prefix/{id} and returns id.
func parseName(field, name, collection string) (string, error) {
	id, ok := strings.CutPrefix(name, collection+"/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", enrollment.Invalidf("%s must look like %s/{id}", field, collection)
	}
	return id, nil
}

// parseChildName checks name has the form parentColl/{p}/childColl/{c}.
func parseChildName(field, name, parentColl, childColl string) (string, string, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != parentColl || parts[2] != childColl || parts[1] == "" || parts[3] == "" {
		return "", "", enrollment.Invalidf("%s must look like %s/{id}/%s/{id}", field, parentColl, childColl)
	}
	return parts[1], parts[3], nil
}

const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

type pageToken struct {
	After string `json:"a"`
}

// page validates page_size and decodes page_token into the key to list after.
func page(size int32, token string) (int, string, error) {
	switch {
	case size < 0:
		return 0, "", enrollment.Invalidf("page_size must not be negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	if token == "" {
		return int(size), "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	var pt pageToken
	if err != nil || json.Unmarshal(raw, &pt) != nil || pt.After == "" {
		return 0, "", enrollment.Invalidf("page_token is invalid; pass next_page_token from the previous response unchanged")
	}
	return int(size), pt.After, nil
}

// nextPageToken returns the token for the page after lastKey, or "" if the page was short.
func nextPageToken(got, size int, lastKey string) string {
	if got < size {
		return ""
	}
	raw, _ := json.Marshal(pageToken{After: lastKey})
	return base64.RawURLEncoding.EncodeToString(raw)
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID returns a random, unguessable resource id (128 bits, lower-case base32).
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// newBatchID returns a random batch id that sorts by creation time (lower-case base32hex of
// the creation instant followed by 64 random bits), so ListBatches can page newest first by id.
func newBatchID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	if _, err := rand.Read(b[8:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// principal returns the authenticated caller; the auth interceptor guarantees one on every
// non-public method, so its absence is a wiring bug.
func principal(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return auth.Principal{}, enrollment.Unauthenticatedf("authentication required")
	}
	return p, nil
}

// digests are the candidate HMACs of a code under every live lookup key.
func (b *base) digests(c enrollcodes.Code) [][]byte {
	ds := b.Keyring.Candidates(c)
	out := make([][]byte, len(ds))
	for i, d := range ds {
		out[i] = d.Sum
	}
	return out
}

func isNotFoundErr(err error) bool { return errors.Is(err, enrollment.ErrNotFound) }
