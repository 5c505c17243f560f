package enrollment

import (
	"errors"
	"fmt"
)

// Error kinds. The service layer maps each to one gRPC code; every domain error wraps exactly
// one of them and carries a message written for the caller (what to fix), never a secret.
var (
	// ErrInvalidArgument means the request itself is malformed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound means the resource does not exist or the caller may not see it.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists means a create collided with an existing resource, or a code was
	// already redeemed.
	ErrAlreadyExists = errors.New("already exists")
	// ErrFailedPrecondition means the resource is not in a state that allows the call.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrPermissionDenied means the caller is authenticated but may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated means credentials are missing or wrong.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnavailable means a transient condition (the database is busy): retry.
	ErrUnavailable = errors.New("unavailable")
)

// Error is a domain error: a kind (one of the Err* sentinels) and a caller-facing message.
type Error struct {
	kind error
	msg  string
}

func (e *Error) Error() string { return e.msg }

// Unwrap lets errors.Is match the kind.
func (e *Error) Unwrap() error { return e.kind }

func newError(kind error, format string, args ...any) error {
	return &Error{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Invalidf returns an ErrInvalidArgument error with a message saying what to fix.
func Invalidf(format string, args ...any) error { return newError(ErrInvalidArgument, format, args...) }

// NotFoundf returns an ErrNotFound error.
func NotFoundf(format string, args ...any) error { return newError(ErrNotFound, format, args...) }

// AlreadyExistsf returns an ErrAlreadyExists error.
func AlreadyExistsf(format string, args ...any) error {
	return newError(ErrAlreadyExists, format, args...)
}

// FailedPreconditionf returns an ErrFailedPrecondition error.
func FailedPreconditionf(format string, args ...any) error {
	return newError(ErrFailedPrecondition, format, args...)
}

// PermissionDeniedf returns an ErrPermissionDenied error.
func PermissionDeniedf(format string, args ...any) error {
	return newError(ErrPermissionDenied, format, args...)
}

// Unavailablef returns an ErrUnavailable error.
func Unavailablef(format string, args ...any) error {
	return newError(ErrUnavailable, format, args...)
}

// Unauthenticatedf returns an ErrUnauthenticated error.
func Unauthenticatedf(format string, args ...any) error {
	return newError(ErrUnauthenticated, format, args...)
}
