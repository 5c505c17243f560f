package gormstore

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"

	"github.com/idprotect/enroll/internal/enrollment"
)

// ImportSubjects adds a chunk of eligibility rows in one transaction, so a chunk either lands
// whole or not at all and a rerun of the same rows changes nothing.
func (s *Store) ImportSubjects(ctx context.Context, incidentID string, rows []enrollment.SubjectRow) (*enrollment.ImportResult, error) {
	res := &enrollment.ImportResult{}
	err := s.bulkTx(ctx, func(tx *gorm.DB) error {
		*res = enrollment.ImportResult{}
		imp, err := s.newImporter(tx, incidentID, rows)
		if err != nil {
			return err
		}
		return imp.run(res)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Statement sizes of the import: each statement costs a round trip and, on SQLite, a parse,
// so fewer, larger ones win; both engines take far more bound parameters than these use
// (5,000 values per lookup, 2,000 rows × 5 columns per insert).
const (
	maxListValues    = 5000
	importInsertRows = 2000
)

type importer struct {
	s           *Store
	tx          *gorm.DB
	incidentID  string
	rows        []enrollment.SubjectRow
	cohorts     map[string]bool
	byRef       map[string]*subjectRow
	byKey       map[string]*subjectRow
	memberships map[membershipKey]bool
}

type membershipKey struct {
	subjectID int64
	cohortID  string
}

func (s *Store) newImporter(tx *gorm.DB, incidentID string, rows []enrollment.SubjectRow) (*importer, error) {
	imp := &importer{
		s: s, tx: tx, incidentID: incidentID, rows: rows,
		cohorts: map[string]bool{}, byRef: map[string]*subjectRow{},
		byKey: map[string]*subjectRow{}, memberships: map[membershipKey]bool{},
	}
	var n int64
	if err := tx.Model(&incidentRow{}).Where("id = ?", incidentID).Count(&n).Error; err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, enrollment.NotFoundf("incident %q not found", incidentID)
	}
	var cohortIDs []string
	if err := tx.Model(&cohortRow{}).Where("incident_id = ?", incidentID).Pluck("id", &cohortIDs).Error; err != nil {
		return nil, err
	}
	for _, id := range cohortIDs {
		imp.cohorts[id] = true
	}
	refs := make([]string, 0, len(rows))
	keys := make([][]byte, 0, len(rows))
	for _, r := range rows {
		refs = append(refs, r.ExternalRef)
		keys = append(keys, r.IdentityKey)
	}
	const subjectQuery = "SELECT id, incident_id, external_ref, identity_key, cohort_id FROM subjects WHERE incident_id = "
	existing, err := findIn[subjectRow](s, tx, subjectQuery, incidentID, "external_ref", refs)
	if err != nil {
		return nil, err
	}
	byKey, err := findIn[subjectRow](s, tx, subjectQuery, incidentID, "identity_key", keys)
	if err != nil {
		return nil, err
	}
	existing = append(existing, byKey...)
	ids := make([]int64, 0, len(existing))
	for i := range existing {
		sr := &existing[i]
		imp.byRef[sr.ExternalRef] = sr
		if _, ok := imp.byKey[string(sr.IdentityKey)]; !ok {
			imp.byKey[string(sr.IdentityKey)] = sr
		}
		ids = append(ids, sr.ID)
	}
	ms, err := findIn[membershipRow](s, tx, "SELECT incident_id, cohort_id, subject_id FROM subject_cohorts WHERE incident_id = ", incidentID, "subject_id", ids)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		imp.memberships[membershipKey{m.SubjectID, m.CohortID}] = true
	}
	return imp, nil
}

func (imp *importer) run(res *enrollment.ImportResult) error {
	type pending struct {
		subject *subjectRow
		cohort  string
	}
	type addKey struct {
		subject *subjectRow
		cohort  string
	}
	var newSubjects []*subjectRow
	var adds []pending
	added := map[addKey]bool{}
	for _, r := range imp.rows {
		if !imp.cohorts[r.CohortID] {
			res.Errors = append(res.Errors, enrollment.ImportError{Line: r.Line, Reason: fmt.Sprintf("unknown cohort %q; create it first or fix the cohort column", r.CohortID)})
			continue
		}
		subj, ok := imp.byRef[r.ExternalRef]
		if ok && !bytes.Equal(subj.IdentityKey, r.IdentityKey) {
			res.Errors = append(res.Errors, enrollment.ImportError{Line: r.Line, Reason: fmt.Sprintf("external_ref %q was already imported with different identity data", r.ExternalRef)})
			continue
		}
		if !ok {
			// The same person under another reference (in another cohort) is one subject.
			subj, ok = imp.byKey[string(r.IdentityKey)]
		}
		if !ok {
			subj = &subjectRow{IncidentID: imp.incidentID, ExternalRef: r.ExternalRef, IdentityKey: r.IdentityKey, CohortID: r.CohortID}
			newSubjects = append(newSubjects, subj)
			imp.byRef[r.ExternalRef] = subj
			imp.byKey[string(r.IdentityKey)] = subj
			res.Created++
		}
		if subj.ID != 0 && imp.memberships[membershipKey{subj.ID, r.CohortID}] {
			res.Unchanged++
			continue
		}
		if added[addKey{subj, r.CohortID}] {
			res.Unchanged++
			continue
		}
		added[addKey{subj, r.CohortID}] = true
		if subj.ID != 0 || subj.CohortID != r.CohortID {
			res.MembershipsAdded++
		}
		adds = append(adds, pending{subj, r.CohortID})
	}
	if len(newSubjects) > 0 {
		ids, err := imp.s.allocateSubjectIDs(imp.tx, len(newSubjects))
		if err != nil {
			return err
		}
		for i, sr := range newSubjects {
			sr.ID = ids[i]
		}
		err = imp.s.bulkInsert(imp.tx, "subjects", subjectColumns, importInsertRows, len(newSubjects), func(i int) []any {
			sr := newSubjects[i]
			return []any{sr.ID, sr.IncidentID, sr.ExternalRef, sr.IdentityKey, sr.CohortID}
		})
		if err != nil {
			return fmt.Errorf("failed to insert subjects: %w", err)
		}
	}
	if len(adds) == 0 {
		return nil
	}
	perCohort := map[string]int64{}
	for _, a := range adds {
		perCohort[a.cohort]++
	}
	err := imp.s.bulkInsert(imp.tx, "subject_cohorts", membershipColumns, importInsertRows, len(adds), func(i int) []any {
		return []any{imp.incidentID, adds[i].cohort, adds[i].subject.ID}
	})
	if err != nil {
		return fmt.Errorf("failed to insert cohort memberships: %w", err)
	}
	for cohort, n := range perCohort {
		err := imp.tx.Model(&cohortRow{}).Where("incident_id = ? AND id = ?", imp.incidentID, cohort).
			Update("subject_count", gorm.Expr("subject_count + ?", n)).Error
		if err != nil {
			return err
		}
	}
	return nil
}

// findIn returns the rows of query, which ends in "<column> = " and is completed with first
// and "AND col IN values", looking the values up in lists of at most maxListValues.
// PostgreSQL gets each list as one array parameter (col = ANY($2)): a list of thousands of
// separate parameters defeats its planner, which then scans the whole table comparing every
// row with every value (2 s per 5,000-value look-up at only 200k subjects, measured). SQLite
// serves an IN list from the index directly.
func findIn[T, V any](s *Store, tx *gorm.DB, query string, first any, col string, values []V) ([]T, error) {
	var out []T
	for _, part := range chunk(len(values), maxListValues) {
		list := values[part[0]:part[1]]
		var q strings.Builder
		q.WriteString(query)
		s.placeholder(&q, 1)
		args := []any{first}
		if s.driver == DriverPostgres {
			q.WriteString(" AND " + col + " = ANY($2)")
			args = append(args, list)
		} else {
			q.WriteString(" AND " + col + " IN (")
			for i, v := range list {
				if i > 0 {
					q.WriteByte(',')
				}
				q.WriteByte('?')
				args = append(args, v)
			}
			q.WriteByte(')')
		}
		got, err := scanAll[T](s, tx, q.String(), args)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// scanAll runs a query that bypasses gorm's statement builder (which would expand a slice
// argument into a list) and scans its rows with gorm's scanner.
func scanAll[T any](s *Store, tx *gorm.DB, query string, args []any) ([]T, error) {
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context, query, args...)
	if err != nil {
		return nil, s.translate(err)
	}
	defer rows.Close()
	var got []T
	// Given a slice, ScanRows reads the current row and every row after it.
	if rows.Next() {
		if err := tx.ScanRows(rows, &got); err != nil {
			return nil, err
		}
	}
	return got, rows.Err()
}

var (
	subjectColumns    = []string{"id", "incident_id", "external_ref", "identity_key", "cohort_id"}
	membershipColumns = []string{"incident_id", "cohort_id", "subject_id"}
)

// allocateSubjectIDs reserves ids for n new subjects, so that they and their memberships can
// be written with bulk statements (COPY returns no ids). PostgreSQL draws them from the
// table's own sequence, which concurrent importers share safely; SQLite continues after the
// largest id, which is safe because BEGIN IMMEDIATE makes this transaction the only writer.
func (s *Store) allocateSubjectIDs(tx *gorm.DB, n int) ([]int64, error) {
	ids := make([]int64, 0, n)
	if s.driver == DriverPostgres {
		err := tx.Raw("SELECT nextval(pg_get_serial_sequence('subjects', 'id')) FROM generate_series(1, ?)", n).Scan(&ids).Error
		if err == nil && len(ids) != n {
			err = fmt.Errorf("allocated %d subject ids, want %d", len(ids), n)
		}
		return ids, err
	}
	var last int64
	if err := tx.Raw("SELECT COALESCE(MAX(id), 0) FROM subjects").Scan(&last).Error; err != nil {
		return nil, err
	}
	for i := range int64(n) {
		ids = append(ids, last+1+i)
	}
	return ids, nil
}

// chunk splits n items into [start, end) ranges of at most size, keeping IN lists under the
// engines' bound-parameter limits.
func chunk(n, size int) [][2]int {
	var out [][2]int
	for i := 0; i < n; i += size {
		out = append(out, [2]int{i, min(i+size, n)})
	}
	return out
}
