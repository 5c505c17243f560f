// Package idempotency makes retries of mutating calls safe. A call that carries a request id
// (the request_id field, or an Idempotency-Key header through the gateway) runs once; a retry
// with the same id and the same request gets the first outcome back, errors included, and the
// same id with a different request is refused.
package idempotency

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"sync/atomic"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/clock"
	"github.com/idprotect/enroll/internal/store"
)

// TTL is how long outcomes are remembered; the product promises at least 24 hours.
const TTL = 48 * time.Hour

// staleAfter is how long a claim may stay pending before a retry may take it over: the
// first attempt died between claiming and recording its outcome.
const staleAfter = time.Minute

// headerKey is the metadata key the gateway maps the Idempotency-Key header to.
const headerKey = "idempotency-key"

// Store is the persistence the interceptor needs.
type Store interface {
	ReserveIdempotencyKey(ctx context.Context, rec store.IdempotencyRecord, staleBefore time.Time) (*store.IdempotencyRecord, bool, error)
	CompleteIdempotencyKey(ctx context.Context, scope, key string, response []byte, code int, message string) error
	ReleaseIdempotencyKey(ctx context.Context, scope, key string) error
}

// replayable are the outcomes worth remembering: they depend on the request and the data,
// not on the moment. Transient failures are forgotten, so a retry runs again.
var replayable = map[codes.Code]bool{
	codes.OK: true, codes.InvalidArgument: true, codes.NotFound: true, codes.AlreadyExists: true,
	codes.FailedPrecondition: true, codes.PermissionDenied: true, codes.OutOfRange: true,
}

// replayNoteKey carries the flag TrackReplay hands to an outer interceptor.
type replayNoteKey struct{}

// TrackReplay lets an interceptor that runs before this one learn whether a call was answered
// from a stored outcome (or refused as a reused request_id) without its handler running: pass
// the returned context down the chain and call the function after it returns. The brute-force
// limits use it so that a retry of a failed look-up is not counted as another guess.
func TrackReplay(ctx context.Context) (context.Context, func() bool) {
	var replayed atomic.Bool
	return context.WithValue(ctx, replayNoteKey{}, &replayed), replayed.Load
}

func noteReplay(ctx context.Context) {
	if f, ok := ctx.Value(replayNoteKey{}).(*atomic.Bool); ok {
		f.Store(true)
	}
}

// UnaryServerInterceptor applies idempotency to requests that have a request_id field. It
// sits after authentication (outcomes are scoped per client) and after rate limits.
//
// hashKey keys the request fingerprint: requests can carry low-entropy personal data (a
// lost-code request's name, birth date and SSN), which a plain hash would expose to an
// offline dictionary attack on the stored fingerprints.
func UnaryServerInterceptor(st Store, clk clock.Clock, hashKey []byte) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		msg, ok := req.(proto.Message)
		if !ok {
			return h(ctx, req)
		}
		fd := msg.ProtoReflect().Descriptor().Fields().ByName("request_id")
		if fd == nil {
			return h(ctx, req)
		}
		key := msg.ProtoReflect().Get(fd).String()
		if key == "" {
			if md, ok := metadata.FromIncomingContext(ctx); ok {
				if v := md.Get(headerKey); len(v) == 1 {
					key = v[0]
				}
			}
		}
		if key == "" {
			return h(ctx, req)
		}
		if !validKey(key) {
			return nil, status.Error(codes.InvalidArgument, "request_id must be 1-128 printable characters; a UUID is a good choice")
		}
		scope := "public"
		if p, ok := auth.PrincipalFrom(ctx); ok {
			scope = "client:" + p.ClientID
		}
		hash, err := requestHash(hashKey, info.FullMethod, msg)
		if err != nil {
			return nil, status.Error(codes.Internal, "failed to fingerprint the request")
		}
		now := clk.Now().UTC().Truncate(time.Microsecond)
		existing, reserved, err := st.ReserveIdempotencyKey(ctx, store.IdempotencyRecord{
			Scope: scope, Key: key, Method: info.FullMethod, RequestHash: hash, CreateTime: now, ExpireTime: now.Add(TTL),
		}, now.Add(-staleAfter))
		if err != nil {
			return nil, err
		}
		if !reserved {
			noteReplay(ctx)
			return replay(existing, info.FullMethod, hash)
		}
		resp, herr := h(ctx, req)
		code := status.Code(herr)
		bg := context.WithoutCancel(ctx)
		if !replayable[code] {
			_ = st.ReleaseIdempotencyKey(bg, scope, key)
			return resp, herr
		}
		var body []byte
		if herr == nil {
			if m, ok := resp.(proto.Message); ok {
				a, err := anypb.New(withoutSecrets(m))
				if err == nil {
					body, err = proto.Marshal(a)
				}
				if err != nil {
					_ = st.ReleaseIdempotencyKey(bg, scope, key)
					return resp, herr
				}
			}
		}
		if err := st.CompleteIdempotencyKey(bg, scope, key, body, int(code), status.Convert(herr).Message()); err != nil {
			// The call took effect; only the memory of it failed. Say so rather than hide it.
			_ = st.ReleaseIdempotencyKey(bg, scope, key)
		}
		return resp, herr
	}
}

func replay(rec *store.IdempotencyRecord, method string, hash []byte) (any, error) {
	switch {
	case rec.Method != method || !bytes.Equal(rec.RequestHash, hash):
		return nil, status.Error(codes.InvalidArgument, "request_id was already used for a different request; use a new request_id for a new request")
	case !rec.Done:
		return nil, status.Error(codes.Aborted, "a request with this request_id is still being processed; retry in a few seconds")
	case codes.Code(rec.Code) != codes.OK:
		return nil, status.Error(codes.Code(rec.Code), rec.Message)
	}
	var a anypb.Any
	if err := proto.Unmarshal(rec.Response, &a); err != nil {
		return nil, status.Error(codes.Internal, "failed to replay the stored response")
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, status.Error(codes.Internal, "failed to replay the stored response")
	}
	return m, nil
}

// requestHash fingerprints the request without its request id, deterministically.
func requestHash(key []byte, method string, msg proto.Message) ([]byte, error) {
	c := proto.Clone(msg)
	r := c.ProtoReflect()
	r.Clear(r.Descriptor().Fields().ByName("request_id"))
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, err
	}
	h := hmac.New(sha256.New, key)
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil), nil
}

func validKey(k string) bool {
	if len(k) > 128 {
		return false
	}
	for _, r := range k {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// withoutSecrets is the response as it may be stored: a secret shown once (a new client's
// secret) is never written to the idempotency table, so a replay returns the client without
// it, and whoever lost the first response creates a new client.
func withoutSecrets(m proto.Message) proto.Message {
	if r, ok := m.(*enrollv1.CreateClientResponse); ok && r.GetClientSecret() != "" {
		c := proto.Clone(r).(*enrollv1.CreateClientResponse)
		c.ClientSecret = ""
		return c
	}
	return m
}
