package storetest

import (
	"reflect"
	"slices"
	"testing"

	"github.com/idprotect/enroll/internal/enrollment"
)

var incidentTests = map[string]func(t *testing.T, open OpenFunc){
	"create and get round-trips every field": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		in := &enrollment.Incident{
			ID: "incident-terms", Title: "Custom terms", DiscloseTime: Base.AddDate(0, 0, -3),
			CoverageMonths: 12, RedeemWindowDays: 90, ActivationWindowDays: 14,
			PartnerID: PartnerID, CreateTime: Base,
		}
		must(t, f.S.CreateIncident(t.Context(), in), "create incident")
		got, err := f.S.GetIncident(t.Context(), in.ID)
		must(t, err, "get incident")
		wantTime(t, "DiscloseTime", got.DiscloseTime, in.DiscloseTime)
		wantTime(t, "CreateTime", got.CreateTime, in.CreateTime)
		got.DiscloseTime, got.CreateTime = in.DiscloseTime, in.CreateTime
		if !reflect.DeepEqual(got, in) {
			t.Fatalf("GetIncident = %+v, want %+v", got, in)
		}
	},
	"list pages by id with after and limit": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		// Created out of order: listing is by id, not by insertion.
		for _, id := range []string{"inc-d", "inc-b", "inc-e", "inc-a", "inc-c"} {
			f.AddIncident(id, PartnerID)
		}
		all := []string{IncidentID, "inc-a", "inc-b", "inc-c", "inc-d", "inc-e"}
		slices.Sort(all)
		var got []string
		after := ""
		for page := 0; ; page++ {
			list, err := f.S.ListIncidents(t.Context(), after, 2)
			must(t, err, "list incidents")
			if len(list) > 2 {
				t.Fatalf("page %d has %d incidents, limit 2", page, len(list))
			}
			if len(list) == 0 {
				break
			}
			for _, in := range list {
				got = append(got, in.ID)
			}
			after = list[len(list)-1].ID
		}
		if !reflect.DeepEqual(got, all) {
			t.Fatalf("paged ids = %v, want %v", got, all)
		}
		list, err := f.S.ListIncidents(t.Context(), "inc-b", 100)
		must(t, err, "list after inc-b")
		if want := "[inc-c inc-d inc-e incident-a]"; ids(list, incidentID) != want {
			t.Fatalf("after inc-b = %s, want %s", ids(list, incidentID), want)
		}
	},
	"duplicate id is already exists and keeps the original": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		dup := *f.Incident
		dup.Title = "Impostor"
		wantKind(t, f.S.CreateIncident(t.Context(), &dup), enrollment.ErrAlreadyExists, "create duplicate incident")
		got, err := f.S.GetIncident(t.Context(), IncidentID)
		must(t, err, "get incident")
		if got.Title != f.Incident.Title {
			t.Fatalf("title = %q after duplicate create, want %q", got.Title, f.Incident.Title)
		}
	},
	"missing partner is failed precondition and creates nothing": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		in := &enrollment.Incident{ID: "incident-orphan", Title: "x", PartnerID: "partner-missing", CreateTime: Base}
		in.ApplyDefaults()
		wantKind(t, f.S.CreateIncident(t.Context(), in), enrollment.ErrFailedPrecondition, "create incident of missing partner")
		_, err := f.S.GetIncident(t.Context(), in.ID)
		wantKind(t, err, enrollment.ErrNotFound, "get rejected incident")
	},
	"unknown id is not found": func(t *testing.T, open OpenFunc) {
		s := open(t)
		_, err := s.GetIncident(t.Context(), "incident-nope")
		wantKind(t, err, enrollment.ErrNotFound, "get unknown incident")
	},
}

var cohortTests = map[string]func(t *testing.T, open OpenFunc){
	"create and get round-trips every field": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		c := &enrollment.Cohort{
			IncidentID: IncidentID, ID: "cohort-full", DisplayName: "Postpaid customers",
			ExposedData: []string{"NAME", "SSN", "DRIVERS_LICENSE"}, OfferApplies: true,
			RecommendedActions: []string{"Change your account PIN.", "Enroll, then freeze your credit."},
		}
		must(t, f.S.CreateCohort(t.Context(), c), "create cohort")
		got, err := f.S.GetCohort(t.Context(), IncidentID, c.ID)
		must(t, err, "get cohort")
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("GetCohort = %+v, want %+v", got, c)
		}
		none, err := f.S.GetCohort(t.Context(), IncidentID, CohortNoOffer)
		must(t, err, "get cohort without offer")
		if none.OfferApplies {
			t.Fatal("OfferApplies = true for a cohort created with false")
		}
	},
	"list pages by id within the incident": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		f.AddIncident("incident-other", PartnerID)
		f.AddCohort("incident-other", "cohort-aa", true) // sorts inside the range; other incident
		f.AddCohort(IncidentID, "cohort-c", true)
		want := "[cohort-a cohort-b cohort-c cohort-none]"
		var got []*enrollment.Cohort
		after := ""
		for {
			page, err := f.S.ListCohorts(t.Context(), IncidentID, after, 1)
			must(t, err, "list cohorts")
			if len(page) > 1 {
				t.Fatalf("page has %d cohorts, limit 1", len(page))
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[0].ID
		}
		if ids(got, cohortID) != want {
			t.Fatalf("paged cohorts = %s, want %s", ids(got, cohortID), want)
		}
		page, err := f.S.ListCohorts(t.Context(), IncidentID, CohortA, 2)
		must(t, err, "list cohorts after cohort-a")
		if ids(page, cohortID) != "[cohort-b cohort-c]" {
			t.Fatalf("after cohort-a, limit 2 = %s", ids(page, cohortID))
		}
	},
	"duplicate id is already exists; same id in another incident is fine": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		dup := &enrollment.Cohort{IncidentID: IncidentID, ID: CohortA, DisplayName: "again", OfferApplies: false}
		wantKind(t, f.S.CreateCohort(t.Context(), dup), enrollment.ErrAlreadyExists, "create duplicate cohort")
		got, err := f.S.GetCohort(t.Context(), IncidentID, CohortA)
		must(t, err, "get cohort")
		if !got.OfferApplies || got.DisplayName == "again" {
			t.Fatalf("duplicate create changed the cohort: %+v", got)
		}
		f.AddIncident("incident-other", PartnerID)
		f.AddCohort("incident-other", CohortA, true)
	},
	"unknown incident is not found": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		c := &enrollment.Cohort{IncidentID: "incident-nope", ID: CohortA, DisplayName: "x"}
		wantKind(t, f.S.CreateCohort(t.Context(), c), enrollment.ErrNotFound, "create cohort of unknown incident")
		_, err := f.S.GetCohort(t.Context(), "incident-nope", CohortA)
		wantKind(t, err, enrollment.ErrNotFound, "get cohort of unknown incident")
		_, err = f.S.GetCohort(t.Context(), IncidentID, "cohort-nope")
		wantKind(t, err, enrollment.ErrNotFound, "get unknown cohort")
	},
}

var partnerClientTests = map[string]func(t *testing.T, open OpenFunc){
	"partners: create, get, duplicate, unknown": func(t *testing.T, open OpenFunc) {
		s := open(t)
		p := &enrollment.Partner{ID: "partner-x", DisplayName: "Monitor X", EnrollmentURI: "https://x.example/e"}
		must(t, s.CreatePartner(t.Context(), p), "create partner")
		got, err := s.GetPartner(t.Context(), p.ID)
		must(t, err, "get partner")
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("GetPartner = %+v, want %+v", got, p)
		}
		dup := &enrollment.Partner{ID: p.ID, DisplayName: "Other"}
		wantKind(t, s.CreatePartner(t.Context(), dup), enrollment.ErrAlreadyExists, "create duplicate partner")
		if got, _ := s.GetPartner(t.Context(), p.ID); got == nil || got.DisplayName != p.DisplayName {
			t.Fatalf("duplicate create changed the partner: %+v", got)
		}
		_, err = s.GetPartner(t.Context(), "partner-nope")
		wantKind(t, err, enrollment.ErrNotFound, "get unknown partner")
	},
	"clients: create, get, duplicate, unknown": func(t *testing.T, open OpenFunc) {
		f := NewFixture(t, open)
		admin := &enrollment.Client{ID: "cli-admin", Role: "ADMIN", DisplayName: "ops", SecretHash: "hash-1", CreateTime: Base}
		partner := &enrollment.Client{ID: "cli-partner", Role: "PARTNER", PartnerID: PartnerID, DisplayName: "vendor", SecretHash: "hash-2", CreateTime: Base}
		for _, c := range []*enrollment.Client{admin, partner} {
			must(t, f.S.CreateClient(t.Context(), c), "create client "+c.ID)
			got, err := f.S.GetClient(t.Context(), c.ID)
			must(t, err, "get client "+c.ID)
			wantTime(t, "CreateTime", got.CreateTime, c.CreateTime)
			got.CreateTime = c.CreateTime
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("GetClient = %+v, want %+v", got, c)
			}
		}
		dup := &enrollment.Client{ID: admin.ID, Role: "FINANCE", DisplayName: "x", SecretHash: "hash-evil", CreateTime: Base}
		wantKind(t, f.S.CreateClient(t.Context(), dup), enrollment.ErrAlreadyExists, "create duplicate client")
		if got, _ := f.S.GetClient(t.Context(), admin.ID); got == nil || got.SecretHash != "hash-1" || got.Role != "ADMIN" {
			t.Fatalf("duplicate create changed the client: %+v", got)
		}
		_, err := f.S.GetClient(t.Context(), "cli-nope")
		wantKind(t, err, enrollment.ErrNotFound, "get unknown client")
	},
	"partner client of unknown partner is failed precondition": func(t *testing.T, open OpenFunc) {
		s := open(t)
		c := &enrollment.Client{ID: "cli-orphan", Role: "PARTNER", PartnerID: "partner-nope", DisplayName: "x", SecretHash: "h", CreateTime: Base}
		wantKind(t, s.CreateClient(t.Context(), c), enrollment.ErrFailedPrecondition, "create client of unknown partner")
		_, err := s.GetClient(t.Context(), c.ID)
		wantKind(t, err, enrollment.ErrNotFound, "get rejected client")
	},
	"upsert creates, then replaces the secret hash": func(t *testing.T, open OpenFunc) {
		s := open(t)
		c := &enrollment.Client{ID: "cli-boot", Role: "ADMIN", DisplayName: "bootstrap", SecretHash: "hash-old", CreateTime: Base}
		must(t, s.UpsertClient(t.Context(), c), "upsert new client")
		got, err := s.GetClient(t.Context(), c.ID)
		must(t, err, "get upserted client")
		if got.SecretHash != "hash-old" {
			t.Fatalf("SecretHash = %q, want hash-old", got.SecretHash)
		}
		c2 := *c
		c2.SecretHash, c2.DisplayName, c2.CreateTime = "hash-new", "bootstrap (rotated)", Base.AddDate(0, 1, 0)
		must(t, s.UpsertClient(t.Context(), &c2), "upsert existing client")
		got, err = s.GetClient(t.Context(), c.ID)
		must(t, err, "get replaced client")
		if got.SecretHash != "hash-new" || got.DisplayName != c2.DisplayName || got.Role != "ADMIN" {
			t.Fatalf("after upsert: %+v, want secret hash-new and the new display name", got)
		}
	},
}

func incidentID(in *enrollment.Incident) string { return in.ID }
func cohortID(c *enrollment.Cohort) string      { return c.ID }
