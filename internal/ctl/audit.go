package ctl

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/audit"
)

const auditVerifyHelp = `Reads an export of enrollctl audit export (JSON lines, from the first entry; - for standard
input) and checks the chain without a server: each entry's hash matches its content, each
names the hash of the one before, and sequence numbers run 1, 2, 3... The first edited,
removed, inserted or reordered entry is named by its line; the exit status is then non-zero.
Entries cut off the end leave a shorter chain that still holds: check that the last seq is
the one audit export printed.`

func auditExport(fs *flag.FlagSet) runFunc {
	out := fs.String("o", "", "output file, JSON lines (created with mode 0600; refuses to overwrite)")
	return func(ctx context.Context, c *conn) error {
		if *out == "" {
			return errors.New("-o is required")
		}
		n, last, err := exportAudit(ctx, c, *out)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "exported %d audit entries to %s; the last is seq %d\n", n, *out, last)
		return nil
	}
}

func exportAudit(ctx context.Context, c *conn, out string) (n, last int64, err error) {
	stream, err := c.reporting().ExportAudit(ctx, &enrollv1.ExportAuditRequest{})
	if err != nil {
		return 0, 0, fmt.Errorf("failed to start the audit export: %w", err)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("failed to create %s: %w", out, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(out)
		}
	}()
	w := bufio.NewWriter(f)
	p := newProgress(c.env.Stderr, "audit export", 0)
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, fmt.Errorf("audit export interrupted after %d entries: %w", n, err)
		}
		for _, e := range chunk.GetEntries() {
			line, err := entryOf(e).MarshalLine()
			if err != nil {
				return 0, 0, err
			}
			if _, err := w.Write(line); err != nil {
				return 0, 0, fmt.Errorf("failed to write %s: %w", out, err)
			}
			n, last = n+1, e.GetSequence()
		}
		p.update(n)
	}
	if err := w.Flush(); err != nil {
		return 0, 0, fmt.Errorf("failed to write %s: %w", out, err)
	}
	p.done(n)
	return n, last, nil
}

// entryOf is the audit entry as hashed: the timestamp keeps its nanoseconds and is UTC.
func entryOf(e *enrollv1.AuditEntry) *audit.Entry {
	return &audit.Entry{
		Seq: e.GetSequence(), Time: e.GetTime().AsTime().UTC(), Actor: e.GetActor(), Role: e.GetRole(), Action: e.GetAction(),
		Resource: e.GetResource(), RequestID: e.GetRequestId(), Outcome: e.GetOutcome(), PrevHash: e.GetPrevHash(), Hash: e.GetHash(),
	}
}

func auditVerify(fs *flag.FlagSet) runFunc {
	return func(_ context.Context, c *conn) error {
		if fs.NArg() != 1 {
			return errors.New("name the export to verify: enrollctl audit verify FILE")
		}
		path := fs.Arg(0)
		var in io.Reader = os.Stdin
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("failed to open the export: %w", err)
			}
			defer f.Close()
			in = f
		}
		n, err := audit.Verify(in)
		var p *audit.Problem
		if errors.As(err, &p) {
			fmt.Fprintf(c.env.Stdout, "FAILED after %d good entries: line %d (seq %d): %s\n", n, p.Line, p.Seq, p.Reason)
			return fmt.Errorf("the audit export %s does not verify: %w", path, p)
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s holds no audit entries: nothing was verified", path)
		}
		// Entries cut off the end leave a shorter chain that still holds: compare the last seq
		// with the server's (audit export prints it).
		fmt.Fprintf(c.env.Stdout, "verified %d entries: the chain is intact up to seq %d\n", n, n)
		return nil
	}
}
