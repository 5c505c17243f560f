package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/idprotect/enroll/internal/codes"
	"github.com/idprotect/enroll/internal/eligibility"
	"github.com/idprotect/enroll/internal/identity"
)

// The raw baseline writes the rows the system ends up with (subjects, subject_cohorts and
// codes, in the same tables with the same indexes) straight through the driver, paying the
// same per-row crypto: the identity-key HMAC of every row and, for each person in an offered
// cohort, the code derivation plus its lookup-key HMAC. It reads the same CSV with the same
// reader. It skips everything that makes the system a system: gRPC, the import's lookups of
// existing subjects, batches, counters, leases, events and gorm.

type rawSubject struct {
	id          int64
	ref, cohort string
	identityKey []byte
}

type rawMember struct {
	cohort    string
	subjectID int64
}

type rawCode struct {
	hmac      []byte
	cohort    string
	subjectID int64
}

// rawChunk is one transaction's worth of rows; its slices are reused chunk after chunk, so
// memory does not grow with N.
type rawChunk struct {
	subjects []rawSubject
	members  []rawMember
	codes    []rawCode
}

func (c *rawChunk) reset() {
	c.subjects, c.members, c.codes = c.subjects[:0], c.members[:0], c.codes[:0]
}

// rawCodeMeta is what every code row shares.
type rawCodeMeta struct {
	incident  string
	keyID     string
	issueTime time.Time
	redeemBy  time.Time
}

// batchIDFor gives the raw codes of a cohort a batch id, as the system's per-cohort batches do.
func batchIDFor(cohort string) string { return "raw-" + cohort }

// rawWriter writes one chunk in one transaction.
type rawWriter interface {
	write(ctx context.Context, c *rawChunk) error
}

// RawResult is what the raw baseline measured.
type RawResult struct {
	Rows        int64
	Subjects    int64
	Memberships int64
	Codes       int64
	Total       time.Duration
	// Prepare is the time spent reading the CSV and computing identity keys and code HMACs;
	// Write the time spent in the driver (inserts and commits).
	Prepare, Write time.Duration
	// CPU is this process's CPU time over the run; Written the bytes it wrote to storage
	// (SQLite runs in this process; on PostgreSQL the server's writes are not included).
	CPU     time.Duration
	Written int64
	Method  string
}

// rawRun reads rows rows of file and writes them through w in chunks of chunkRows rows.
func rawRun(ctx context.Context, file string, rows int64, chunkRows int, sec Secrets, meta rawCodeMeta, w rawWriter, prog *progress) (*RawResult, error) {
	keyring, err := codes.ParseKeyring(sec.LookupKeys)
	if err != nil {
		return nil, err
	}
	idSecret, err := base64.StdEncoding.DecodeString(sec.IdentityKey)
	if err != nil {
		return nil, err
	}
	hasher, err := identity.NewHasher(idSecret)
	if err != nil {
		return nil, err
	}
	batchSecret, err := codes.NewBatchSecret()
	if err != nil {
		return nil, err
	}
	meta.keyID = keyring.Current()
	offered := map[string]bool{}
	for _, c := range benchCohorts {
		offered[c.id] = c.offer
	}

	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &RawResult{Rows: rows}
	self0, _ := ReadProc(os.Getpid())
	start := time.Now()
	rd, err := eligibility.NewReader(f)
	if err != nil {
		return nil, err
	}
	chunk := &rawChunk{}
	var (
		nextID   int64 = 1
		inChunk  int
		read     int64
		lastKey  []byte // identity key of the latest credit applicant
		lastID   int64
		lastPP   bool // ... who already has a postpaid membership
		writeDur time.Duration
	)
	flush := func() error {
		t := time.Now()
		if err := w.write(ctx, chunk); err != nil {
			return err
		}
		writeDur += time.Since(t)
		res.Subjects += int64(len(chunk.subjects))
		res.Memberships += int64(len(chunk.members))
		res.Codes += int64(len(chunk.codes))
		chunk.reset()
		inChunk = 0
		prog.update(read, nil)
		return ctx.Err()
	}
	prog.start("raw insert", rows)
	for read < rows {
		rec, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s has only %d rows, %d wanted", file, read, rows)
			}
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		read++
		key, err := hasher.Key(identity.Fields{LastName: rec.LastName, DateOfBirth: rec.DateOfBirth, SSN: rec.SSN, Phone: rec.Phone, PostalCode: rec.PostalCode})
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", rec.Line, err)
		}
		// The generator's only repeated person is a postpaid row copying the latest credit
		// applicant: one subject with two memberships (a second such row adds nothing), and
		// one code (from the credit batch, which the system runs first), exactly as the
		// system resolves it.
		if rec.Cohort == eligibility.CohortPostpaid && lastKey != nil && bytes.Equal(key, lastKey) {
			if !lastPP {
				chunk.members = append(chunk.members, rawMember{cohort: rec.Cohort, subjectID: lastID})
				lastPP = true
			}
		} else {
			id := nextID
			nextID++
			chunk.subjects = append(chunk.subjects, rawSubject{id: id, ref: rec.ExternalRef, cohort: rec.Cohort, identityKey: key})
			chunk.members = append(chunk.members, rawMember{cohort: rec.Cohort, subjectID: id})
			if offered[rec.Cohort] {
				sum, err := keyring.Sum(meta.keyID, codes.Derive(batchSecret, id, 0))
				if err != nil {
					return nil, err
				}
				chunk.codes = append(chunk.codes, rawCode{hmac: sum, cohort: rec.Cohort, subjectID: id})
			}
			if rec.Cohort == eligibility.CohortCredit {
				lastKey, lastID, lastPP = key, id, false
			}
		}
		inChunk++
		if inChunk == chunkRows {
			if err := flush(); err != nil {
				prog.done()
				return nil, err
			}
		}
	}
	if inChunk > 0 {
		if err := flush(); err != nil {
			prog.done()
			return nil, err
		}
	}
	res.Total = time.Since(start)
	res.Write = writeDur
	res.Prepare = res.Total - writeDur
	if self1, err := ReadProc(os.Getpid()); err == nil {
		res.CPU, res.Written = self1.CPU-self0.CPU, self1.Written-self0.Written
	}
	prog.done()
	return res, nil
}
