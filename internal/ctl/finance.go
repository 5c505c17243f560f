package ctl

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
)

const billableHelp = `An enrollment is billable in a calendar month (UTC) if it was ACTIVE at any instant of it:
activated before the month ends, and neither cancelled nor past its coverage end when it
starts. With -o, the enrollments behind the number are written as CSV
(enrollment,member_id,incident,activate_time,end_time) and the command fails if the file's
rows do not equal the count (for the current month, an activation in between can do that:
run it again).`

func (c *conn) reporting() enrollv1.ReportingServiceClient {
	return enrollv1.NewReportingServiceClient(c.cc)
}

func recount(fs *flag.FlagSet) runFunc {
	incident := fs.String("incident", "", "incident id (required)")
	return func(ctx context.Context, c *conn) error {
		if *incident == "" {
			return errors.New("--incident is required")
		}
		resp, err := c.reporting().Recount(ctx, &enrollv1.RecountRequest{Incident: "incidents/" + *incident})
		if err != nil {
			return fmt.Errorf("failed to recount: %w", err)
		}
		diffs := resp.GetDifferences()
		fmt.Fprintf(c.env.Stdout, "counters checked: %d\ndifferences: %d\n", resp.GetCountersChecked(), len(diffs))
		printDifferences(c.env.Stdout, diffs)
		if len(diffs) > 0 {
			return fmt.Errorf("%d counter(s) of incident %s differ from the recount; enrollctl repair-counters --incident %s replaces them", len(diffs), *incident, *incident)
		}
		return nil
	}
}

func repairCounters(fs *flag.FlagSet) runFunc {
	incident := fs.String("incident", "", "incident id (required)")
	return func(ctx context.Context, c *conn) error {
		if *incident == "" {
			return errors.New("--incident is required")
		}
		resp, err := c.reporting().RepairCounters(ctx, &enrollv1.RepairCountersRequest{Incident: "incidents/" + *incident, RequestId: requestID()})
		if err != nil {
			return fmt.Errorf("failed to repair counters: %w", err)
		}
		fmt.Fprintf(c.env.Stdout, "repaired: %d\n", len(resp.GetRepaired()))
		printDifferences(c.env.Stdout, resp.GetRepaired())
		return nil
	}
}

// printDifferences lists counter differences in a stable order (the server's is not).
func printDifferences(w io.Writer, diffs []*enrollv1.CounterDifference) {
	diffs = slices.Clone(diffs)
	slices.SortFunc(diffs, func(a, b *enrollv1.CounterDifference) int {
		return cmp.Or(cmp.Compare(a.GetCohort(), b.GetCohort()), cmp.Compare(a.GetKind(), b.GetKind()), cmp.Compare(a.GetState(), b.GetState()))
	})
	for _, d := range diffs {
		fmt.Fprintf(w, "  %s %s %s: counter %d, actual %d\n", lastSegment(d.GetCohort()), d.GetKind(), d.GetState(), d.GetCounter(), d.GetActual())
	}
}

// requestID is a fresh idempotency key: one run of a command is one request.
func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func billable(fs *flag.FlagSet) runFunc {
	partner := fs.String("partner", "", "partner id (required)")
	month := fs.String("month", "", "calendar month, YYYY-MM (UTC; required)")
	out := fs.String("o", "", "also write the enrollments behind the number to this CSV file (created with mode 0600; refuses to overwrite)")
	return func(ctx context.Context, c *conn) error {
		if *partner == "" || *month == "" {
			return errors.New("--partner and --month are required")
		}
		resp, err := c.reporting().GetBillableMonths(ctx, &enrollv1.GetBillableMonthsRequest{Partner: "partners/" + *partner, Month: *month})
		if err != nil {
			return fmt.Errorf("failed to count billable member-months: %w", err)
		}
		n := resp.GetMemberMonths()
		fmt.Fprintf(c.env.Stdout, "billable member-months: %d\n", n)
		if *out == "" {
			return nil
		}
		rows, err := exportBillable(ctx, c, *partner, *month, *out, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "wrote %d rows to %s\n", rows, *out)
		return nil
	}
}

// exportBillable writes the CSV and checks its row count against want. Rows are counted by
// newline: no field can hold one (member ids are printable characters only).
func exportBillable(ctx context.Context, c *conn, partner, month, out string, want int64) (rows int64, err error) {
	stream, err := c.reporting().ExportBillable(ctx, &enrollv1.ExportBillableRequest{Partner: "partners/" + partner, Month: month})
	if err != nil {
		return 0, fmt.Errorf("failed to start the export: %w", err)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("failed to create %s: %w", out, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(out)
		}
	}()
	p := newProgress(c.env.Stderr, "billable export", want)
	var lines int64
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("export interrupted after %d rows: %w", max(lines-1, 0), err)
		}
		if _, err := f.Write(chunk.GetData()); err != nil {
			return 0, fmt.Errorf("failed to write %s: %w", out, err)
		}
		lines += int64(bytes.Count(chunk.GetData(), []byte{'\n'}))
		p.update(max(lines-1, 0))
	}
	if lines == 0 {
		return 0, errors.New("the export sent nothing, not even the CSV header")
	}
	rows = lines - 1
	p.done(rows)
	if rows != want {
		return rows, fmt.Errorf("the export has %d rows but the count is %d: the billable set changed in between, run it again", rows, want)
	}
	return rows, nil
}
