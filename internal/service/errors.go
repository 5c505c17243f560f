package service

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/requestid"
)

// ErrorMapping returns the innermost links of the interceptor chain: they turn whatever a
// handler returns into a gRPC status once, so handlers return domain errors and every outer
// link (audit, idempotency, limits, logging, metrics) sees the final code.
func ErrorMapping(log *slog.Logger) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err != nil {
			return nil, ToStatus(ctx, log, err)
		}
		return resp, nil
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return ToStatus(ss.Context(), log, h(srv, ss))
	}
	return unary, stream
}

// ToStatus maps an error to a gRPC status. Domain errors keep their caller-facing message;
// anything unexpected is logged with the request id and hidden behind a generic message.
func ToStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isDomain(err) {
		return err
	}
	var code codes.Code
	switch {
	case errors.Is(err, enrollcodes.ErrMalformed):
		// A typo, not a guess: said plainly, and nothing was looked up.
		return status.Error(codes.InvalidArgument, "check the code: "+strings.TrimPrefix(err.Error(), "codes: "))
	case errors.Is(err, enrollment.ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, enrollment.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, enrollment.ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, enrollment.ErrFailedPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, enrollment.ErrPermissionDenied):
		code = codes.PermissionDenied
	case errors.Is(err, enrollment.ErrUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, enrollment.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	default:
		id := requestid.From(ctx)
		log.ErrorContext(ctx, "internal error", "request_id", id, "err", err)
		return status.Errorf(codes.Internal, "internal error; quote request id %s when reporting it", id)
	}
	return status.Error(code, err.Error())
}
