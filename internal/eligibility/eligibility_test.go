package eligibility

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"
)

func readAll(t *testing.T, r io.Reader) ([]Record, []*RowError) {
	t.Helper()
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	var rowErrs []*RowError
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return recs, rowErrs
		}
		var re *RowError
		if errors.As(err, &re) {
			rowErrs = append(rowErrs, re)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
}

func TestReaderColumnsAnyOrderAndLineNumbers(t *testing.T) {
	t.Parallel()
	in := "\ufeffCohort,external_ref,last_name,extra,ssn\n" +
		"credit-applicants,A1,Smith,x,123-45-6789\n" +
		"credit-applicants,A2,Jones\n" + // short row
		"\"postpaid-customers\",A3,\"O'Brien, Jr\",y,6789\n"
	recs, rowErrs := readAll(t, strings.NewReader(in))
	if len(recs) != 2 || recs[0].ExternalRef != "A1" || recs[0].SSN != "123-45-6789" || recs[1].LastName != "O'Brien, Jr" {
		t.Fatalf("records: %+v", recs)
	}
	if recs[0].Line != 2 || recs[1].Line != 4 {
		t.Fatalf("line numbers: %d, %d", recs[0].Line, recs[1].Line)
	}
	if len(rowErrs) != 1 || rowErrs[0].Line != 3 {
		t.Fatalf("row errors: %+v", rowErrs)
	}
}

func TestReaderHeaderErrors(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"empty":            "",
		"missing cohort":   "external_ref,last_name\nA,B\n",
		"duplicate column": "external_ref,cohort,last_name,cohort\n",
	} {
		if _, err := NewReader(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReaderGzipAndGenerator(t *testing.T) {
	t.Parallel()
	var plain bytes.Buffer
	if err := Generate(&plain, GenerateOptions{Rows: 5000, Seed: 7, Malformed: 30}); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	_ = Generate(&again, GenerateOptions{Rows: 5000, Seed: 7, Malformed: 30})
	if !bytes.Equal(plain.Bytes(), again.Bytes()) {
		t.Fatal("the generator must be deterministic for a seed")
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(plain.Bytes())
	_ = zw.Close()
	recs, rowErrs := readAll(t, &gz)
	if len(recs) != 5000 || len(rowErrs) != 0 {
		t.Fatalf("gzip read %d records, %d row errors", len(recs), len(rowErrs))
	}
	per := map[string]int{}
	identities := map[string]int{}
	for _, r := range recs {
		per[r.Cohort]++
		if r.SSN != "" {
			identities[r.LastName+r.DateOfBirth+r.SSN+r.PostalCode]++
		}
	}
	if c := per[CohortCredit]; c < 3900 || c > 4300 {
		t.Errorf("credit applicants %d of 5000, want about 82%%", c)
	}
	if c := per[CohortPrepaid]; c < 40 || c > 170 {
		t.Errorf("prepaid %d of 5000, want about 2%%", c)
	}
	overlap := 0
	for _, n := range identities {
		if n > 1 {
			overlap++
		}
	}
	if overlap == 0 {
		t.Error("the generator must put some people in two cohorts")
	}
}

func FuzzReader(f *testing.F) {
	f.Add("external_ref,cohort,last_name\nA,c,Smith\n")
	f.Add("external_ref,cohort,last_name,ssn\n\"A\"\"x\",c,S,1\nB,c\n")
	f.Add("\x1f\x8b")
	f.Fuzz(func(t *testing.T, in string) {
		rd, err := NewReader(strings.NewReader(in))
		if err != nil {
			return
		}
		for i := 0; i < 10000; i++ {
			rec, err := rd.Next()
			var re *RowError
			switch {
			case errors.Is(err, io.EOF):
				return
			case errors.As(err, &re):
				if re.Line < 1 {
					t.Fatalf("row error without a line: %+v", re)
				}
			case err != nil:
				return
			case rec.Line < 2:
				t.Fatalf("record line %d is not after the header", rec.Line)
			}
		}
	})
}
