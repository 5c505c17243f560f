package gormstore

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/idprotect/enroll/internal/enrollment"
)

// CreateIncident stores a new incident.
func (s *Store) CreateIncident(ctx context.Context, in *enrollment.Incident) error {
	row := incidentRow{
		ID: in.ID, Title: in.Title, CoverageMonths: in.CoverageMonths,
		RedeemWindowDays: in.RedeemWindowDays, ActivationWindowDays: in.ActivationWindowDays,
		PartnerID: in.PartnerID, CreateTime: in.CreateTime,
	}
	if !in.DiscloseTime.IsZero() {
		t := in.DiscloseTime
		row.DiscloseTime = &t
	}
	return s.tx(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&partnerRow{}).Where("id = ?", in.PartnerID).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			return enrollment.FailedPreconditionf("partner %q does not exist; create it first with CreatePartner", in.PartnerID)
		}
		if err := tx.Create(&row).Error; err != nil {
			if isDuplicate(err) {
				return enrollment.AlreadyExistsf("incident %q already exists", in.ID)
			}
			return err
		}
		return nil
	})
}

// GetIncident returns an incident.
func (s *Store) GetIncident(ctx context.Context, id string) (*enrollment.Incident, error) {
	var row incidentRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		if isNotFound(err) {
			return nil, enrollment.NotFoundf("incident %q not found", id)
		}
		return nil, err
	}
	return row.toDomain(), nil
}

// ListIncidents pages through incidents by id.
func (s *Store) ListIncidents(ctx context.Context, after string, limit int) ([]*enrollment.Incident, error) {
	var rows []incidentRow
	if err := s.db.WithContext(ctx).Where("id > ?", after).Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]*enrollment.Incident, len(rows))
	for i := range rows {
		out[i] = rows[i].toDomain()
	}
	return out, nil
}

func (r *incidentRow) toDomain() *enrollment.Incident {
	in := &enrollment.Incident{
		ID: r.ID, Title: r.Title, CoverageMonths: r.CoverageMonths,
		RedeemWindowDays: r.RedeemWindowDays, ActivationWindowDays: r.ActivationWindowDays,
		PartnerID: r.PartnerID, CreateTime: r.CreateTime.UTC(),
	}
	if r.DiscloseTime != nil {
		in.DiscloseTime = r.DiscloseTime.UTC()
	}
	return in
}

// CreateCohort stores a cohort.
func (s *Store) CreateCohort(ctx context.Context, c *enrollment.Cohort) error {
	actions, err := json.Marshal(c.RecommendedActions)
	if err != nil {
		return err
	}
	row := cohortRow{
		IncidentID: c.IncidentID, ID: c.ID, DisplayName: c.DisplayName,
		ExposedData: strings.Join(c.ExposedData, ","), RecommendedActions: string(actions),
		OfferApplies: c.OfferApplies,
	}
	return s.tx(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&incidentRow{}).Where("id = ?", c.IncidentID).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			return enrollment.NotFoundf("incident %q not found", c.IncidentID)
		}
		if err := tx.Create(&row).Error; err != nil {
			if isDuplicate(err) {
				return enrollment.AlreadyExistsf("cohort %q already exists in incident %q", c.ID, c.IncidentID)
			}
			return err
		}
		return nil
	})
}

// GetCohort returns a cohort.
func (s *Store) GetCohort(ctx context.Context, incidentID, cohortID string) (*enrollment.Cohort, error) {
	var row cohortRow
	err := s.db.WithContext(ctx).Where("incident_id = ? AND id = ?", incidentID, cohortID).Take(&row).Error
	if err != nil {
		if isNotFound(err) {
			return nil, enrollment.NotFoundf("cohort %q not found in incident %q", cohortID, incidentID)
		}
		return nil, err
	}
	return row.toDomain(), nil
}

// ListCohorts pages through an incident's cohorts by id.
func (s *Store) ListCohorts(ctx context.Context, incidentID, after string, limit int) ([]*enrollment.Cohort, error) {
	var rows []cohortRow
	err := s.db.WithContext(ctx).Where("incident_id = ? AND id > ?", incidentID, after).
		Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make([]*enrollment.Cohort, len(rows))
	for i := range rows {
		out[i] = rows[i].toDomain()
	}
	return out, nil
}

func (r *cohortRow) toDomain() *enrollment.Cohort {
	c := &enrollment.Cohort{
		IncidentID: r.IncidentID, ID: r.ID, DisplayName: r.DisplayName,
		OfferApplies: r.OfferApplies, SubjectCount: r.SubjectCount,
	}
	if r.ExposedData != "" {
		c.ExposedData = strings.Split(r.ExposedData, ",")
	}
	_ = json.Unmarshal([]byte(r.RecommendedActions), &c.RecommendedActions)
	return c
}

// CreatePartner stores a partner.
func (s *Store) CreatePartner(ctx context.Context, p *enrollment.Partner) error {
	row := partnerRow{ID: p.ID, DisplayName: p.DisplayName, EnrollmentURI: p.EnrollmentURI}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		if isDuplicate(err) {
			return enrollment.AlreadyExistsf("partner %q already exists", p.ID)
		}
		return err
	}
	return nil
}

// GetPartner returns a partner.
func (s *Store) GetPartner(ctx context.Context, id string) (*enrollment.Partner, error) {
	var row partnerRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		if isNotFound(err) {
			return nil, enrollment.NotFoundf("partner %q not found", id)
		}
		return nil, err
	}
	return &enrollment.Partner{ID: row.ID, DisplayName: row.DisplayName, EnrollmentURI: row.EnrollmentURI}, nil
}

// CreateClient stores a client.
func (s *Store) CreateClient(ctx context.Context, c *enrollment.Client) error {
	row := toClientRow(c)
	return s.tx(ctx, func(tx *gorm.DB) error {
		if row.PartnerID != nil {
			var n int64
			if err := tx.Model(&partnerRow{}).Where("id = ?", *row.PartnerID).Count(&n).Error; err != nil {
				return err
			}
			if n == 0 {
				return enrollment.FailedPreconditionf("partner %q does not exist; create it first with CreatePartner", *row.PartnerID)
			}
		}
		if err := tx.Create(&row).Error; err != nil {
			if isDuplicate(err) {
				return enrollment.AlreadyExistsf("client %q already exists", c.ID)
			}
			return err
		}
		return nil
	})
}

// UpsertClient creates or replaces a client.
func (s *Store) UpsertClient(ctx context.Context, c *enrollment.Client) error {
	row := toClientRow(c)
	return s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "id"}},
		DoUpdates: clause.AssignmentColumns([]string{"role", "partner_id", "display_name", "secret_hash"}),
	}).Create(&row).Error
}

// GetClient returns a client.
func (s *Store) GetClient(ctx context.Context, id string) (*enrollment.Client, error) {
	var row clientRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		if isNotFound(err) {
			return nil, enrollment.NotFoundf("client %q not found", id)
		}
		return nil, err
	}
	c := &enrollment.Client{
		ID: row.ID, Role: row.Role, DisplayName: row.DisplayName,
		SecretHash: row.SecretHash, CreateTime: row.CreateTime.UTC(),
	}
	if row.PartnerID != nil {
		c.PartnerID = *row.PartnerID
	}
	return c, nil
}

func toClientRow(c *enrollment.Client) clientRow {
	row := clientRow{
		ID: c.ID, Role: c.Role, DisplayName: c.DisplayName, SecretHash: c.SecretHash,
		CreateTime: c.CreateTime,
	}
	if row.CreateTime.IsZero() {
		row.CreateTime = time.Now().UTC()
	}
	if c.PartnerID != "" {
		p := c.PartnerID
		row.PartnerID = &p
	}
	return row
}
