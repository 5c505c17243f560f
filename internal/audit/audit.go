// Package audit keeps the tamper-evident record of who changed what. Every mutating call by
// an authenticated client appends an entry (actor, role, action, resource, request id, time,
// outcome) that carries the SHA-256 of the previous entry, so an export of the chain can be
// verified offline: an edited, removed, inserted or reordered entry breaks the chain at a
// place the verifier names.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"
)

// Entry is one audit record as exported (JSON lines) and hashed.
type Entry struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Actor     string    `json:"actor"`
	Role      string    `json:"role"`
	Action    string    `json:"action"`
	Resource  string    `json:"resource"`
	RequestID string    `json:"request_id"`
	Outcome   string    `json:"outcome"`
	PrevHash  string    `json:"prev_hash"`
	Hash      string    `json:"hash"`
}

// GenesisHash is the prev_hash of the first entry.
var GenesisHash = hex.EncodeToString(make([]byte, sha256.Size))

// ComputeHash is SHA-256 over a canonical encoding of every field but Hash: each field
// length-prefixed in a fixed order, so no two different entries encode the same way.
func (e *Entry) ComputeHash() string {
	h := sha256.New()
	for _, f := range []string{
		strconv.FormatInt(e.Seq, 10), e.Time.UTC().Format(time.RFC3339Nano), e.Actor, e.Role,
		e.Action, e.Resource, e.RequestID, e.Outcome, e.PrevHash,
	} {
		h.Write([]byte(strconv.Itoa(len(f))))
		h.Write([]byte{':'})
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MarshalLine renders e as one JSON line.
func (e *Entry) MarshalLine() ([]byte, error) {
	b, err := json.Marshal(e)
	return append(b, '\n'), err
}

// Intent is what the caller is about to do, carried in the request context so that the store
// can append the entry in the same transaction as the change it records. The first
// committed transaction of the call claims it; if none does (a failed call, or a call that
// changes nothing, such as an export), the interceptor writes it on its own.
type Intent struct {
	Actor, Role, Action, Resource, RequestID string
	Time                                     time.Time
	written                                  atomic.Bool
}

// Claim marks the intent written; it returns false if it was already.
func (i *Intent) Claim() bool { return i.written.CompareAndSwap(false, true) }

// Unclaim undoes Claim after the transaction that claimed it rolled back.
func (i *Intent) Unclaim() { i.written.Store(false) }

// Written reports whether a transaction recorded the intent.
func (i *Intent) Written() bool { return i.written.Load() }

type intentKey struct{}

// WithIntent attaches an intent to ctx.
func WithIntent(ctx context.Context, i *Intent) context.Context {
	return context.WithValue(ctx, intentKey{}, i)
}

// IntentFrom returns the intent in ctx, or nil.
func IntentFrom(ctx context.Context) *Intent {
	i, _ := ctx.Value(intentKey{}).(*Intent)
	return i
}
