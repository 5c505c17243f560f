package bench

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/audit"
	enrollcodes "github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/enrollment"
	"github.com/idprotect/enroll/internal/store/gormstore"
)

// The bare-store server is the like-for-like baseline: a grpc-go server with no interceptors
// whose two RPCs run exactly the database transaction enrolld runs for them, by calling the
// same store methods (gormstore.RedeemCode, gormstore.ActivateEnrollment, with the audit
// entry enrolld's interceptor attaches to an authenticated call). It serves enrolld's own
// database (the phases take turns, so the two servers never load it at once) with codes
// enrolld issued and exported. What ours pays on top of it is the serving stack: the
// interceptor chain (request id, metrics, logging, auth and its JWT check, access policy,
// limits, idempotency, audit), the service layer and, on REST, enrolld's gateway set-up.

// barePartnerClient is the actor of the audit entries the bare-store server writes.
const barePartnerClient = "clients/bare-store"

type bareStore struct {
	st        *gormstore.Store
	keyring   *enrollcodes.Keyring
	partnerID string
}

type bareStoreRedemption struct {
	enrollv1.UnimplementedRedemptionServiceServer
	b *bareStore
}

func (s *bareStoreRedemption) RedeemCode(ctx context.Context, req *enrollv1.RedeemCodeRequest) (*enrollv1.RedeemCodeResponse, error) {
	code, err := enrollcodes.Parse(req.GetCode())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var sums [][]byte
	for _, d := range s.b.keyring.Candidates(code) {
		sums = append(sums, d.Sum)
	}
	now := time.Now().UTC()
	e, v, err := s.b.st.RedeemCode(ctx, sums, bareID(), now)
	if err != nil {
		return nil, bareStatus(err)
	}
	return &enrollv1.RedeemCodeResponse{
		Enrollment:  bareEnrollment(e, now),
		NextStepUri: v.Partner.EnrollmentURI + "?enrollment=enrollments%2F" + e.ID,
	}, nil
}

type bareStorePartner struct {
	enrollv1.UnimplementedPartnerServiceServer
	b *bareStore
}

func (s *bareStorePartner) ActivateEnrollment(ctx context.Context, req *enrollv1.ActivateEnrollmentRequest) (*enrollv1.ActivateEnrollmentResponse, error) {
	id, err := bareActivationID(req)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	ctx = audit.WithIntent(ctx, &audit.Intent{
		Actor: barePartnerClient, Role: "PARTNER", Action: enrollv1.PartnerService_ActivateEnrollment_FullMethodName,
		Resource: req.GetName(), RequestID: bareID(), Time: now.Truncate(time.Microsecond),
	})
	e, err := s.b.st.ActivateEnrollment(ctx, id, s.b.partnerID, req.GetMemberId(), now)
	if err != nil {
		return nil, bareStatus(err)
	}
	return &enrollv1.ActivateEnrollmentResponse{Enrollment: bareEnrollment(e, now)}, nil
}

func bareEnrollment(e *enrollment.Enrollment, now time.Time) *enrollv1.Enrollment {
	out := &enrollv1.Enrollment{
		Name: "enrollments/" + e.ID, Incident: "incidents/" + e.IncidentID, Cohort: "incidents/" + e.IncidentID + "/cohorts/" + e.CohortID,
		Partner: "partners/" + e.PartnerID, State: enrollv1.EnrollmentState_ENROLLMENT_STATE_PENDING, MemberId: e.MemberID,
		RedeemTime: timestamppb.New(e.RedeemTime), ActivationDeadlineTime: timestamppb.New(e.ActivationDeadline), ReadTime: timestamppb.New(now),
	}
	if e.State == enrollment.EnrollmentActive {
		out.State = enrollv1.EnrollmentState_ENROLLMENT_STATE_ACTIVE
		out.ActivateTime, out.CoverageEndTime = timestamppb.New(e.ActivateTime), timestamppb.New(e.CoverageEnd)
	}
	return out
}

func bareStatus(err error) error {
	switch {
	case errors.Is(err, enrollment.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, enrollment.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, enrollment.ErrFailedPrecondition):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, enrollment.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
