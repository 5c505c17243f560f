package eligibility

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
)

// Cohort ids the generator uses, in the proportions of the seed breach: about 82% credit
// applicants, 16% postpaid and 2% prepaid customers.
const (
	CohortCredit   = "credit-applicants"
	CohortPostpaid = "postpaid-customers"
	CohortPrepaid  = "prepaid-customers"
)

// GenerateOptions shape a synthetic file.
type GenerateOptions struct {
	Rows int64
	Seed uint64
	// OverlapPerMille is how many postpaid rows in a thousand repeat a credit applicant (the
	// same person in two cohorts, under another reference). Default 20.
	OverlapPerMille int
	// Malformed is how many rows to damage on purpose (bad date, bad SSN, missing field), to
	// exercise error reporting. Default 0.
	Malformed int64
}

var lastNames = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "García", "Miller", "Davis", "Rodríguez", "Martínez",
	"Hernández", "López", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Pérez",
	"Thompson", "White", "Harris", "Sánchez", "Clark", "Ramírez", "Lewis", "Robinson", "O'Brien", "Nguyen", "Okafor", "Novak"}

// Generate writes a deterministic synthetic eligibility CSV: the same options always give the
// same bytes, so benchmarks can be reproduced anywhere. It streams; memory does not grow
// with Rows.
func Generate(w io.Writer, o GenerateOptions) error {
	if o.OverlapPerMille == 0 {
		o.OverlapPerMille = 20
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	rng := rand.New(rand.NewPCG(o.Seed, 0x656e726f6c6c))
	var malformedEvery int64
	if o.Malformed > 0 {
		malformedEvery = max(o.Rows/o.Malformed, 1)
	}
	fmt.Fprintln(bw, "external_ref,cohort,last_name,date_of_birth,ssn,phone,postal_code")
	var lastCredit [4]string // the most recent credit applicant, reused for overlaps
	var damaged int64
	for i := int64(0); i < o.Rows; i++ {
		p := rng.IntN(1000)
		name := lastNames[rng.IntN(len(lastNames))]
		dob := fmt.Sprintf("%04d-%02d-%02d", 1930+rng.IntN(78), 1+rng.IntN(12), 1+rng.IntN(28))
		zip := fmt.Sprintf("%05d", rng.IntN(100000))
		var cohort, ref, ssn, phone string
		switch {
		case p < 820:
			cohort, ref = CohortCredit, fmt.Sprintf("APP-%09d", i)
			ssn = fmt.Sprintf("%03d-%02d-%04d", 1+rng.IntN(899), 1+rng.IntN(99), rng.IntN(10000))
			lastCredit = [4]string{name, dob, ssn, zip}
		case p < 980:
			cohort, ref = CohortPostpaid, fmt.Sprintf("PP-%09d", i)
			ssn = fmt.Sprintf("%03d-%02d-%04d", 1+rng.IntN(899), 1+rng.IntN(99), rng.IntN(10000))
			if lastCredit[0] != "" && rng.IntN(1000) < o.OverlapPerMille*1000/160 {
				name, dob, ssn, zip = lastCredit[0], lastCredit[1], lastCredit[2], lastCredit[3]
			}
		default:
			cohort, ref = CohortPrepaid, fmt.Sprintf("PRE-%09d", i)
			phone = fmt.Sprintf("+1 %03d 555 %04d", 200+rng.IntN(800), rng.IntN(10000))
		}
		if malformedEvery > 0 && damaged < o.Malformed && i%malformedEvery == malformedEvery/2 {
			damaged++
			switch damaged % 3 {
			case 0:
				dob = "31/12/1980"
			case 1:
				ssn, phone = "12-3", "" // three digits: neither a full SSN nor a last four
			default:
				name = ""
			}
		}
		fmt.Fprintf(bw, "%s,%s,%s,%s,%s,%s,%s\n", ref, cohort, csvField(name), dob, ssn, phone, zip)
	}
	return bw.Flush()
}

func csvField(s string) string {
	for _, r := range s {
		if r == ',' || r == '"' || r == '\n' {
			return `"` + s + `"`
		}
	}
	return s
}
