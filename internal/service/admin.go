package service

import (
	"context"
	"strings"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/enrollment"
)

// AdminServer implements enrollv1.AdminServiceServer.
type AdminServer struct {
	enrollv1.UnimplementedAdminServiceServer
	*base
}

// CreateIncident creates an incident.
func (s *AdminServer) CreateIncident(ctx context.Context, req *enrollv1.CreateIncidentRequest) (*enrollv1.CreateIncidentResponse, error) {
	in, err := s.incidentFromRequest(req)
	if err != nil {
		return nil, err
	}
	if err := s.Store.CreateIncident(ctx, in); err != nil {
		return nil, err
	}
	return &enrollv1.CreateIncidentResponse{Incident: incidentToProto(in)}, nil
}

func (s *AdminServer) incidentFromRequest(req *enrollv1.CreateIncidentRequest) (*enrollment.Incident, error) {
	if err := enrollment.ValidateResourceID("incident_id", req.GetIncidentId()); err != nil {
		return nil, err
	}
	pi := req.GetIncident()
	if pi == nil {
		return nil, enrollment.Invalidf("incident is required")
	}
	title := strings.TrimSpace(pi.GetTitle())
	if title == "" || len(title) > 200 {
		return nil, enrollment.Invalidf("incident.title is required (at most 200 characters)")
	}
	partnerID, err := parseName("incident.partner", pi.GetPartner(), "partners")
	if err != nil {
		return nil, err
	}
	in := &enrollment.Incident{ID: req.GetIncidentId(), Title: title, PartnerID: partnerID, CreateTime: s.now()}
	if pi.GetDiscloseTime() != nil {
		in.DiscloseTime = pi.GetDiscloseTime().AsTime()
	}
	if o := pi.GetOffer(); o != nil {
		in.CoverageMonths = int(o.GetCoverageMonths())
		in.RedeemWindowDays = int(o.GetRedeemWindowDays())
		in.ActivationWindowDays = int(o.GetActivationWindowDays())
	}
	in.ApplyDefaults()
	switch {
	case in.CoverageMonths < 1 || in.CoverageMonths > 120:
		return nil, enrollment.Invalidf("offer.coverage_months must be between 1 and 120")
	case in.RedeemWindowDays < 1 || in.RedeemWindowDays > 3650:
		return nil, enrollment.Invalidf("offer.redeem_window_days must be between 1 and 3650")
	case in.ActivationWindowDays < 1 || in.ActivationWindowDays > 365:
		return nil, enrollment.Invalidf("offer.activation_window_days must be between 1 and 365")
	}
	return in, nil
}

// GetIncident reads an incident.
func (s *AdminServer) GetIncident(ctx context.Context, req *enrollv1.GetIncidentRequest) (*enrollv1.GetIncidentResponse, error) {
	id, err := parseName("name", req.GetName(), "incidents")
	if err != nil {
		return nil, err
	}
	in, err := s.Store.GetIncident(ctx, id)
	if err != nil {
		return nil, err
	}
	return &enrollv1.GetIncidentResponse{Incident: incidentToProto(in)}, nil
}

// ListIncidents pages through incidents.
func (s *AdminServer) ListIncidents(ctx context.Context, req *enrollv1.ListIncidentsRequest) (*enrollv1.ListIncidentsResponse, error) {
	size, after, err := page(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	list, err := s.Store.ListIncidents(ctx, after, size)
	if err != nil {
		return nil, err
	}
	resp := &enrollv1.ListIncidentsResponse{}
	for _, in := range list {
		resp.Incidents = append(resp.Incidents, incidentToProto(in))
	}
	if len(list) > 0 {
		resp.NextPageToken = nextPageToken(len(list), size, list[len(list)-1].ID)
	}
	return resp, nil
}

// CreateCohort creates a cohort.
func (s *AdminServer) CreateCohort(ctx context.Context, req *enrollv1.CreateCohortRequest) (*enrollv1.CreateCohortResponse, error) {
	c, err := cohortFromRequest(req)
	if err != nil {
		return nil, err
	}
	if err := s.Store.CreateCohort(ctx, c); err != nil {
		return nil, err
	}
	return &enrollv1.CreateCohortResponse{Cohort: cohortToProto(c)}, nil
}

func cohortFromRequest(req *enrollv1.CreateCohortRequest) (*enrollment.Cohort, error) {
	incidentID, err := parseName("parent", req.GetParent(), "incidents")
	if err != nil {
		return nil, err
	}
	if err := enrollment.ValidateResourceID("cohort_id", req.GetCohortId()); err != nil {
		return nil, err
	}
	pc := req.GetCohort()
	if pc == nil {
		return nil, enrollment.Invalidf("cohort is required")
	}
	name := strings.TrimSpace(pc.GetDisplayName())
	if name == "" || len(name) > 200 {
		return nil, enrollment.Invalidf("cohort.display_name is required (at most 200 characters)")
	}
	if len(pc.GetExposedData()) == 0 {
		return nil, enrollment.Invalidf("cohort.exposed_data needs at least one category, e.g. EXPOSED_DATA_SSN")
	}
	c := &enrollment.Cohort{IncidentID: incidentID, ID: req.GetCohortId(), DisplayName: name, OfferApplies: pc.GetOfferApplies()}
	seen := map[enrollv1.ExposedData]bool{}
	for _, d := range pc.GetExposedData() {
		if _, known := enrollv1.ExposedData_name[int32(d)]; !known || d == enrollv1.ExposedData_EXPOSED_DATA_UNSPECIFIED {
			return nil, enrollment.Invalidf("cohort.exposed_data contains an unknown or unspecified category")
		}
		if !seen[d] {
			seen[d] = true
			c.ExposedData = append(c.ExposedData, strings.TrimPrefix(d.String(), exposedPrefix))
		}
	}
	for _, a := range pc.GetRecommendedActions() {
		a = strings.TrimSpace(a)
		if a == "" || len(a) > 500 {
			return nil, enrollment.Invalidf("each recommended action must be 1-500 characters")
		}
		c.RecommendedActions = append(c.RecommendedActions, a)
	}
	if len(c.RecommendedActions) > 20 {
		return nil, enrollment.Invalidf("at most 20 recommended actions")
	}
	return c, nil
}

// ListCohorts pages through an incident's cohorts.
func (s *AdminServer) ListCohorts(ctx context.Context, req *enrollv1.ListCohortsRequest) (*enrollv1.ListCohortsResponse, error) {
	incidentID, err := parseName("parent", req.GetParent(), "incidents")
	if err != nil {
		return nil, err
	}
	size, after, err := page(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if _, err := s.Store.GetIncident(ctx, incidentID); err != nil {
		return nil, err
	}
	list, err := s.Store.ListCohorts(ctx, incidentID, after, size)
	if err != nil {
		return nil, err
	}
	resp := &enrollv1.ListCohortsResponse{}
	for _, c := range list {
		resp.Cohorts = append(resp.Cohorts, cohortToProto(c))
	}
	if len(list) > 0 {
		resp.NextPageToken = nextPageToken(len(list), size, list[len(list)-1].ID)
	}
	return resp, nil
}

// CreatePartner creates a partner.
func (s *AdminServer) CreatePartner(ctx context.Context, req *enrollv1.CreatePartnerRequest) (*enrollv1.CreatePartnerResponse, error) {
	if err := enrollment.ValidateResourceID("partner_id", req.GetPartnerId()); err != nil {
		return nil, err
	}
	pp := req.GetPartner()
	name := strings.TrimSpace(pp.GetDisplayName())
	if name == "" {
		return nil, enrollment.Invalidf("partner.display_name is required")
	}
	uri := pp.GetEnrollmentUri()
	if !strings.HasPrefix(uri, "https://") && !strings.HasPrefix(uri, "http://localhost") && !strings.HasPrefix(uri, "http://127.0.0.1") {
		return nil, enrollment.Invalidf("partner.enrollment_uri must be an https URL")
	}
	p := &enrollment.Partner{ID: req.GetPartnerId(), DisplayName: name, EnrollmentURI: uri}
	if err := s.Store.CreatePartner(ctx, p); err != nil {
		return nil, err
	}
	return &enrollv1.CreatePartnerResponse{Partner: partnerToProto(p)}, nil
}

// CreateClient creates an API client and returns its secret once.
func (s *AdminServer) CreateClient(ctx context.Context, req *enrollv1.CreateClientRequest) (*enrollv1.CreateClientResponse, error) {
	pc := req.GetClient()
	role, err := auth.ParseRole(strings.TrimPrefix(pc.GetRole().String(), "ROLE_"))
	if err != nil || pc.GetRole() == enrollv1.Role_ROLE_UNSPECIFIED {
		return nil, enrollment.Invalidf("client.role must be ROLE_ADMIN, ROLE_PARTNER or ROLE_FINANCE")
	}
	var partnerID string
	switch {
	case role == auth.RolePartner:
		if partnerID, err = parseName("client.partner", pc.GetPartner(), "partners"); err != nil {
			return nil, enrollment.Invalidf("client.partner is required for ROLE_PARTNER and must look like partners/{id}")
		}
	case pc.GetPartner() != "":
		return nil, enrollment.Invalidf("client.partner is only allowed for ROLE_PARTNER")
	}
	id, err := auth.NewClientID("cli_")
	if err != nil {
		return nil, err
	}
	secret, err := auth.NewClientSecret()
	if err != nil {
		return nil, err
	}
	hash, err := auth.HashSecret(secret)
	if err != nil {
		return nil, err
	}
	c := &enrollment.Client{ID: id, Role: string(role), PartnerID: partnerID, DisplayName: strings.TrimSpace(pc.GetDisplayName()), SecretHash: hash, CreateTime: s.now()}
	if err := s.Store.CreateClient(ctx, c); err != nil {
		return nil, err
	}
	out := &enrollv1.Client{Name: clientName(id), Role: pc.GetRole(), DisplayName: c.DisplayName, CreateTime: ts(c.CreateTime)}
	if partnerID != "" {
		out.Partner = partnerName(partnerID)
	}
	return &enrollv1.CreateClientResponse{Client: out, ClientSecret: secret}, nil
}
