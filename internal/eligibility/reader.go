// Package eligibility reads and generates eligibility files: the CSV lists of affected
// people the company's systems export (external_ref, cohort, and the identity fields). It
// streams: a reader holds one row at a time, whatever the file size.
package eligibility

import (
	"bufio"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Record is one row of an eligibility file.
type Record struct {
	// Line is the 1-based line number in the file (the header is line 1).
	Line        int64
	ExternalRef string
	Cohort      string
	LastName    string
	DateOfBirth string
	SSN         string
	Phone       string
	PostalCode  string
}

// Columns the reader knows. external_ref, cohort and last_name are required; others are
// optional and may come in any order. Unknown columns are ignored, so an export with extra
// fields imports without editing (and those fields are never read).
var columns = []string{"external_ref", "cohort", "last_name", "date_of_birth", "ssn", "phone", "postal_code"}

var required = []string{"external_ref", "cohort", "last_name"}

// RowError is a row that could not be read; the reader can go on after it.
type RowError struct {
	Line   int64
	Reason string
}

func (e *RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// Reader reads records from a CSV stream, gzip-compressed or not.
type Reader struct {
	csv   *csv.Reader
	index map[string]int
	width int
}

// NewReader detects gzip by its magic bytes, reads the header and checks the required
// columns are present.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("failed to open gzip stream: %w", err)
		}
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // checked per row, so one short row does not end the file
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: expected a header line such as external_ref,cohort,last_name,date_of_birth,ssn,phone,postal_code")
		}
		return nil, fmt.Errorf("failed to read the header line: %w", err)
	}
	rd := &Reader{csv: cr, index: map[string]int{}, width: len(header)}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, dup := rd.index[h]; dup && h != "" {
			return nil, fmt.Errorf("column %q appears twice in the header", h)
		}
		rd.index[h] = i
	}
	var missing []string
	for _, c := range required {
		if _, ok := rd.index[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the header lacks required column(s) %s; known columns: %s", strings.Join(missing, ", "), strings.Join(columns, ","))
	}
	return rd, nil
}

// Next returns the next record, io.EOF at the end, or a *RowError for a row that cannot be
// used (the next call continues with the following row). Any other error is fatal.
func (r *Reader) Next() (Record, error) {
	row, err := r.csv.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// encoding/csv resynchronises at the next line after a parse error.
			return Record{}, &RowError{Line: int64(pe.StartLine), Reason: "malformed CSV: " + pe.Err.Error()}
		}
		return Record{}, err
	}
	line, _ := r.csv.FieldPos(0)
	if len(row) != r.width {
		return Record{}, &RowError{Line: int64(line), Reason: fmt.Sprintf("has %d fields, the header has %d", len(row), r.width)}
	}
	get := func(name string) string {
		if i, ok := r.index[name]; ok {
			return strings.TrimSpace(row[i])
		}
		return ""
	}
	return Record{
		Line: int64(line), ExternalRef: get("external_ref"), Cohort: get("cohort"), LastName: get("last_name"),
		DateOfBirth: get("date_of_birth"), SSN: get("ssn"), Phone: get("phone"), PostalCode: get("postal_code"),
	}, nil
}
