package ctl

import (
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/idprotect/enroll/internal/eligibility"
)

const genHelp = `The file is deterministic: the same flags always give the same bytes (gzip output too), so a
load test or a bug report can be reproduced anywhere from its command line. About 82% of rows
are credit applicants, 16% postpaid and 2% prepaid customers. --malformed damages that many
rows to exercise error reporting: a bad date, a missing name or an SSN cut to "12-34" (the
server takes four digits as the SSN's last four, so that last kind is accepted). Needs no
server and no secret.`

func genEligibility(fs *flag.FlagSet) runFunc {
	rows := fs.Int64("rows", 0, "number of data rows (required)")
	seed := fs.Uint64("seed", 0, "random seed (required): the same seed gives the same file")
	malformed := fs.Int64("malformed", 0, "rows to damage on purpose")
	overlap := fs.Int("overlap-per-mille", 20, "rows in a thousand that repeat a credit applicant as a postpaid customer (1-160)")
	out := fs.String("o", "", "output file (refuses to overwrite); default stdout")
	gz := fs.Bool("gzip", false, "gzip the output (implied when -o ends in .gz)")
	return func(_ context.Context, c *conn) error {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		switch {
		case !set["rows"] || !set["seed"]:
			return errors.New("--rows and --seed are required")
		case *rows < 1:
			return errors.New("--rows must be at least 1")
		case *malformed < 0 || *malformed > *rows:
			return fmt.Errorf("--malformed must be between 0 and --rows (%d)", *rows)
		case *overlap < 1 || *overlap > 160:
			// The generator reads 0 as its default and saturates at 160 (every postpaid row
			// an overlap), so values outside this range would not mean what they say.
			return errors.New("--overlap-per-mille must be between 1 and 160")
		}
		opts := eligibility.GenerateOptions{Rows: *rows, Seed: *seed, OverlapPerMille: *overlap, Malformed: *malformed}
		compress := *gz || strings.HasSuffix(*out, ".gz")
		if *out == "" {
			return generate(c.env.Stdout, opts, compress)
		}
		return generateFile(*out, opts, compress, c.env.Stderr)
	}
}

func generateFile(path string, o eligibility.GenerateOptions, compress bool, log io.Writer) (err error) {
	// Never clobber: an eligibility file next to this one may be the real export.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("failed to create %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("failed to write %s: %w", path, cerr)
		}
		if err != nil {
			_ = os.Remove(path) // a truncated file would import as if it were whole
		}
	}()
	if err := generate(f, o, compress); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	kind := "CSV"
	if compress {
		kind = "gzip CSV"
	}
	fmt.Fprintf(log, "wrote %d rows (%d damaged) to %s (%s)\n", o.Rows, o.Malformed, path, kind)
	return nil
}

func generate(w io.Writer, o eligibility.GenerateOptions, compress bool) error {
	if !compress {
		return eligibility.Generate(w, o)
	}
	// No name or modification time in the gzip header, so the bytes depend on the options
	// alone.
	zw := gzip.NewWriter(w)
	if err := eligibility.Generate(zw, o); err != nil {
		return err
	}
	return zw.Close()
}
