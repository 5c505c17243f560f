package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/apiclient"
	"github.com/idprotect/enroll/internal/eligibility"
)

const importHelp = `Rows stream from the file to the server in chunks, so memory stays flat whatever the file's
size. Rows whose CSV structure is broken (wrong number of fields, stray quotes) are rejected
here, rows with bad data (bad date, unknown cohort, ...) by the server; both are reported
with their line numbers and count against --max-errors. Progress goes to stderr, the summary
to stdout. The exit status is non-zero if more than --max-errors rows were rejected, which
stops the import early.

Importing is idempotent: a row imported before is counted as unchanged and never duplicated.
To resume an interrupted or stopped import, fix the file if needed and run the same command
again.`

// shownErrors is how many rejected rows the summary lists; the rest are only counted.
const shownErrors = 20

func importFile(fs *flag.FlagSet) runFunc {
	incident := fs.String("incident", "", "incident id (required)")
	path := fs.String("file", "", "eligibility CSV, optionally gzip-compressed (required)")
	maxErrors := fs.Int64("max-errors", 1000, "stop once more than this many rows were rejected (at least 1)")
	return func(ctx context.Context, c *conn) error {
		switch {
		case *incident == "" || *path == "":
			return errors.New("--incident and --file are required")
		case *maxErrors < 1:
			// The API reads max_errors 0 as its default of 1000, so 0 cannot mean "none".
			return errors.New("--max-errors must be at least 1")
		}
		return runImport(ctx, c, *incident, *path, *maxErrors)
	}
}

func runImport(ctx context.Context, c *conn, incident, path string, maxErrors int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("failed to open eligibility file: %w", err)
	}
	defer f.Close()
	var size int64
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	// Counting below the gzip reader measures compressed bytes, which is what size is in.
	in := &countingReader{r: f}
	rd, err := eligibility.NewReader(in)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", path, err)
	}
	// Cancelling on return ends the stream if reading fails half-way; the chunks the server
	// committed stay, and a rerun skips them.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	p := newProgress(c.env.Stderr, "import", 0)
	var (
		rows, lastLine int64
		local          localErrors
	)
	next := func() (*enrollv1.SubjectRecord, error) {
		for {
			rec, err := rd.Next()
			var re *eligibility.RowError
			switch {
			case errors.As(err, &re):
				rows++
				if local.add(re) > maxErrors {
					return nil, io.EOF // stop sending; what was sent is still imported
				}
				continue
			case errors.Is(err, io.EOF):
				return nil, io.EOF
			case err != nil:
				return nil, fmt.Errorf("failed to read %s after line %d: %w", path, lastLine, err)
			}
			rows++
			lastLine = rec.Line
			if rows%1024 == 0 {
				p.updateFile(rows, in.n, size)
			}
			return &enrollv1.SubjectRecord{
				ExternalRef: rec.ExternalRef, Cohort: rec.Cohort, LastName: rec.LastName, DateOfBirth: rec.DateOfBirth,
				Ssn: rec.SSN, Phone: rec.Phone, PostalCode: rec.PostalCode, Line: rec.Line,
			}, nil
		}
	}
	resp, err := apiclient.Import(ctx, c.admin(), incident, maxErrors, next, func(int64) { p.updateFile(rows, in.n, size) })
	if err != nil {
		return fmt.Errorf("%w (chunks the server acknowledged are imported: run the same command again to resume)", err)
	}
	s := summarize(resp, &local, maxErrors)
	if !s.stopped {
		// After a stop the reader has run ahead of what the server took: a count here
		// would only contradict the summary.
		p.doneFile(rows)
	}
	s.print(c.env.Stdout)
	switch {
	case s.stopped:
		return fmt.Errorf("import stopped early: more than %d rows were rejected", maxErrors)
	case s.errors() > maxErrors:
		return fmt.Errorf("%d rows were rejected, more than --max-errors %d", s.errors(), maxErrors)
	}
	return nil
}

// countingReader counts the bytes read through it, for the ETA.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// localErrors counts the rows the reader rejects and keeps the first few for the summary.
type localErrors struct {
	count int64
	first []*enrollv1.ImportError
}

// add records e and returns the count so far.
func (l *localErrors) add(e *eligibility.RowError) int64 {
	l.count++
	if len(l.first) < shownErrors {
		l.first = append(l.first, &enrollv1.ImportError{Line: e.Line, Reason: e.Reason})
	}
	return l.count
}

type importSummary struct {
	rows, created, memberships, unchanged int64
	localErrs, serverErrs                 int64
	// first holds the rejected rows with the lowest line numbers, local and server merged.
	first     []*enrollv1.ImportError
	stopped   bool
	maxErrors int64
}

func summarize(resp *enrollv1.ImportSubjectsResponse, local *localErrors, maxErrors int64) *importSummary {
	s := &importSummary{
		// Rows the reader rejected never reach the server, so its count lacks them.
		rows:    resp.GetRowsRead() + local.count,
		created: resp.GetCreated(), memberships: resp.GetMembershipsAdded(), unchanged: resp.GetUnchanged(),
		localErrs: local.count, serverErrs: resp.GetErrorCount(),
		stopped: resp.GetStopped() || local.count > maxErrors, maxErrors: maxErrors,
	}
	s.first = append(append(s.first, local.first...), resp.GetErrors()...)
	sort.SliceStable(s.first, func(i, j int) bool { return s.first[i].GetLine() < s.first[j].GetLine() })
	s.first = s.first[:min(len(s.first), shownErrors)]
	return s
}

func (s *importSummary) errors() int64 { return s.localErrs + s.serverErrs }

func (s *importSummary) print(w io.Writer) {
	fmt.Fprintf(w, "rows read:          %d\n", s.rows)
	fmt.Fprintf(w, "created:            %d\n", s.created)
	fmt.Fprintf(w, "memberships added:  %d\n", s.memberships)
	fmt.Fprintf(w, "unchanged:          %d\n", s.unchanged)
	fmt.Fprintf(w, "errors:             %d (%d in the CSV structure, %d rejected by the server)\n", s.errors(), s.localErrs, s.serverErrs)
	if n := s.rows - s.created - s.memberships - s.unchanged - s.errors(); n != 0 {
		// The server counts rows as read when they arrive and commits them in chunks; when
		// it stops at max_errors, rows it had not committed yet are in no other line.
		fmt.Fprintf(w, "not imported:       %d (received, not committed when the server stopped)\n", n)
	}
	if s.stopped {
		fmt.Fprintf(w, "stopped early:      yes, more than --max-errors %d; later rows were not imported\n", s.maxErrors)
	} else {
		fmt.Fprintf(w, "stopped early:      no\n")
	}
	if len(s.first) > 0 {
		fmt.Fprintf(w, "first errors:\n")
		for _, e := range s.first {
			fmt.Fprintf(w, "  line %d: %s\n", e.GetLine(), e.GetReason())
		}
		if n := s.errors() - int64(len(s.first)); n > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", n)
		}
	}
	if s.stopped || s.errors() > 0 {
		fmt.Fprintf(w, "Fix the rows listed and run the same command again: rows already imported are skipped.\n")
	}
}
