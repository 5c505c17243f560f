package service

import (
	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
)

var (
	public  = auth.Rule{Public: true}
	admin   = auth.Rule{Roles: []auth.Role{auth.RoleAdmin}}
	partner = auth.Rule{Roles: []auth.Role{auth.RolePartner}}
	finance = auth.Rule{Roles: []auth.Role{auth.RoleFinance, auth.RoleAdmin}}
)

// Policy declares who may call each RPC. The auth interceptor denies any method missing
// here, and a test checks every registered method has an entry.
func Policy() auth.Policy {
	return auth.Policy{
		enrollv1.AdminService_CreateIncident_FullMethodName:   admin,
		enrollv1.AdminService_GetIncident_FullMethodName:      admin,
		enrollv1.AdminService_ListIncidents_FullMethodName:    admin,
		enrollv1.AdminService_CreateCohort_FullMethodName:     admin,
		enrollv1.AdminService_ListCohorts_FullMethodName:      admin,
		enrollv1.AdminService_CreatePartner_FullMethodName:    admin,
		enrollv1.AdminService_CreateClient_FullMethodName:     admin,
		enrollv1.AdminService_ImportSubjects_FullMethodName:   admin,
		enrollv1.AdminService_IssueCodes_FullMethodName:       admin,
		enrollv1.AdminService_GetBatch_FullMethodName:         admin,
		enrollv1.AdminService_ListBatches_FullMethodName:      admin,
		enrollv1.AdminService_ExportBatchCodes_FullMethodName: admin,
		enrollv1.AdminService_PurgeBatchExport_FullMethodName: admin,
		enrollv1.AdminService_RevokeCode_FullMethodName:       admin,
		enrollv1.AdminService_ReissueCode_FullMethodName:      admin,

		enrollv1.RedemptionService_CheckCode_FullMethodName:           public,
		enrollv1.RedemptionService_RedeemCode_FullMethodName:          public,
		enrollv1.RedemptionService_GetEnrollmentStatus_FullMethodName: public,
		enrollv1.RedemptionService_CancelOwnEnrollment_FullMethodName: public,
		enrollv1.RedemptionService_RequestCodeResend_FullMethodName:   public,

		enrollv1.PartnerService_VerifyCode_FullMethodName:           partner,
		enrollv1.PartnerService_ActivateEnrollment_FullMethodName:   partner,
		enrollv1.PartnerService_GetEnrollment_FullMethodName:        partner,
		enrollv1.PartnerService_ListEnrollments_FullMethodName:      partner,
		enrollv1.PartnerService_CancelEnrollment_FullMethodName:     partner,
		enrollv1.PartnerService_ListEnrollmentEvents_FullMethodName: partner,

		enrollv1.ReportingService_GetCounts_FullMethodName:         finance,
		enrollv1.ReportingService_ExportAudit_FullMethodName:       finance,
		enrollv1.ReportingService_Recount_FullMethodName:           finance,
		enrollv1.ReportingService_RepairCounters_FullMethodName:    admin,
		enrollv1.ReportingService_GetBillableMonths_FullMethodName: finance,
		enrollv1.ReportingService_ExportBillable_FullMethodName:    finance,
		enrollv1.ReportingService_ReconcileInvoice_FullMethodName:  finance,

		enrollv1.AuthService_Token_FullMethodName:   public,
		enrollv1.AuthService_GetJwks_FullMethodName: public,

		// Operational endpoints carry no data.
		"/grpc.health.v1.Health/Check":                                   public,
		"/grpc.health.v1.Health/Watch":                                   public,
		"/grpc.health.v1.Health/List":                                    public,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      public,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": public,
	}
}
