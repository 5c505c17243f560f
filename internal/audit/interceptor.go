package audit

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/clock"
	"github.com/idprotect/enroll/internal/requestid"
)

// Store is what the interceptors need to write entries on their own.
type Store interface {
	AppendAudit(ctx context.Context, in *Intent, outcome string) error
}

// Audited says which calls are recorded: every call whose request has a request_id field
// (the mutating ones) plus the listed read-only calls that hand out secrets (the mail-house
// export of plaintext codes).
type Audited map[string]bool

func (a Audited) applies(method string, req any) bool {
	if a[method] {
		return true
	}
	m, ok := req.(proto.Message)
	return ok && m.ProtoReflect().Descriptor().Fields().ByName("request_id") != nil
}

// UnaryServerInterceptor records audited unary calls of authenticated clients. A call that
// changes something is recorded by the transaction that makes the change; anything else (a
// failure, a no-op) is recorded here afterwards. If a successful call cannot be recorded, it
// reports failure.
func UnaryServerInterceptor(st Store, clk clock.Clock, extra Audited) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		p, ok := auth.PrincipalFrom(ctx)
		if !ok || !extra.applies(info.FullMethod, req) {
			return h(ctx, req)
		}
		in := newIntent(ctx, p, info.FullMethod, req, clk)
		resp, err := h(WithIntent(ctx, in), req)
		if in.Written() {
			return resp, err
		}
		if aerr := st.AppendAudit(context.WithoutCancel(ctx), in, outcome(err)); aerr != nil && err == nil {
			return nil, status.Errorf(codes.Internal, "the call could not be recorded in the audit log; quote request id %s", requestid.From(ctx))
		}
		return resp, err
	}
}

// StreamServerInterceptor records audited streaming calls before they start, so that
// nothing (such as plaintext codes) is handed out unrecorded.
func StreamServerInterceptor(st Store, clk clock.Clock, extra Audited) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		p, ok := auth.PrincipalFrom(ss.Context())
		if !ok || !extra[info.FullMethod] {
			return h(srv, ss)
		}
		return h(srv, &recordingStream{ServerStream: ss, st: st, clk: clk, p: p, method: info.FullMethod})
	}
}

// recordingStream writes the entry when the first request arrives (it names the resource).
type recordingStream struct {
	grpc.ServerStream
	st       Store
	clk      clock.Clock
	p        auth.Principal
	method   string
	recorded bool
}

func (s *recordingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.recorded {
		s.recorded = true
		in := newIntent(s.Context(), s.p, s.method, m, s.clk)
		if err := s.st.AppendAudit(s.Context(), in, "STARTED"); err != nil {
			return status.Errorf(codes.Internal, "the call could not be recorded in the audit log; quote request id %s", requestid.From(s.Context()))
		}
	}
	return nil
}

func newIntent(ctx context.Context, p auth.Principal, method string, req any, clk clock.Clock) *Intent {
	rid := requestid.From(ctx)
	resource := ""
	if m, ok := req.(proto.Message); ok {
		r := m.ProtoReflect()
		if v := stringField(r, "request_id"); v != "" {
			rid = v
		}
		resource = resourceOf(r)
	}
	return &Intent{
		Actor: "clients/" + p.ClientID, Role: string(p.Role), Action: method, Resource: resource,
		RequestID: rid, Time: clk.Now().UTC().Truncate(time.Microsecond),
	}
}

// resourceOf names what a request acts on, from its resource-name fields.
func resourceOf(r protoreflect.Message) string {
	switch {
	case stringField(r, "incident_id") != "":
		return "incidents/" + stringField(r, "incident_id")
	case stringField(r, "partner_id") != "":
		return "partners/" + stringField(r, "partner_id")
	case stringField(r, "cohort_id") != "":
		return stringField(r, "parent") + "/cohorts/" + stringField(r, "cohort_id")
	}
	for _, f := range []protoreflect.Name{"name", "subject", "cohort", "parent", "incident"} {
		if v := stringField(r, f); v != "" {
			return v
		}
	}
	return string(r.Descriptor().Name())
}

func stringField(r protoreflect.Message, name protoreflect.Name) string {
	fd := r.Descriptor().Fields().ByName(name)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	return r.Get(fd).String()
}

func outcome(err error) string {
	if err == nil {
		return "OK"
	}
	return status.Code(err).String()
}
