package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/apiclient"
)

const issueHelp = `With --cohort, issues codes to that cohort of the incident; with --incident alone, to every
cohort of the incident offered protection, one batch per cohort. Only members without a code
get one, so issuing again is safe and issues only to people imported since. Issuance runs in
the server's background and survives restarts: --wait only watches it, and interrupting the
wait stops nothing. The exit status is non-zero if a watched batch FAILED.`

const purgeHelp = `Purging destroys the secret the batch's codes derive from. The codes stay valid and
redeemable, but their plaintext can never be exported again, by anyone: make sure the mail
house has the export first. A lost code can then only be replaced by revoking and reissuing.`

// pollInterval is how often issue --wait reads a batch.
const pollInterval = 500 * time.Millisecond

func issue(fs *flag.FlagSet) runFunc {
	incident := fs.String("incident", "", "incident id (required)")
	cohort := fs.String("cohort", "", "cohort id; default every cohort of the incident offered protection")
	wait := fs.Bool("wait", false, "watch the batches until they finish, with progress on stderr")
	return func(ctx context.Context, c *conn) error {
		if *incident == "" {
			return errors.New("--incident is required (with --cohort, the cohort's incident)")
		}
		req := &enrollv1.IssueCodesRequest{Incident: "incidents/" + *incident}
		if *cohort != "" {
			req = &enrollv1.IssueCodesRequest{Cohort: "incidents/" + *incident + "/cohorts/" + *cohort}
		}
		admin := c.admin()
		resp, err := admin.IssueCodes(ctx, req)
		if err != nil {
			return fmt.Errorf("failed to issue codes: %w", err)
		}
		w := c.env.Stdout
		fmt.Fprintf(w, "started %d batch(es):\n", len(resp.GetBatches()))
		printBatchHeader(w)
		for _, b := range resp.GetBatches() {
			printBatch(w, b)
		}
		if !*wait {
			fmt.Fprintf(w, "Follow them with: enrollctl batches --incident %s\n", *incident)
			return nil
		}
		var failed []string
		final := make([]*enrollv1.Batch, 0, len(resp.GetBatches()))
		for _, b := range resp.GetBatches() {
			done, err := watchBatch(ctx, admin, b, c.env.Stderr)
			if done != nil && done.GetState() == enrollv1.BatchState_BATCH_STATE_FAILED {
				failed = append(failed, fmt.Sprintf("%s (%s): %s", lastSegment(done.GetName()), lastSegment(done.GetCohort()), done.GetError()))
				final = append(final, done)
				continue
			}
			if err != nil {
				return err
			}
			final = append(final, done)
		}
		fmt.Fprintf(w, "finished:\n")
		printBatchHeader(w)
		for _, b := range final {
			printBatch(w, b)
		}
		if len(failed) > 0 {
			return fmt.Errorf("%d batch(es) failed: %s", len(failed), strings.Join(failed, "; "))
		}
		return nil
	}
}

// watchBatch polls b until it leaves RUNNING, printing progress lines to log.
func watchBatch(ctx context.Context, admin enrollv1.AdminServiceClient, b *enrollv1.Batch, log io.Writer) (*enrollv1.Batch, error) {
	var p *progress
	last, err := apiclient.WaitBatch(ctx, admin, b.GetName(), pollInterval, func(b *enrollv1.Batch) {
		if p == nil {
			p = newProgressFrom(log, "issue "+lastSegment(b.GetCohort()), b.GetTotal(), b.GetIssued())
		}
		// The total shrinks at the end by members an overlapping cohort's batch served.
		p.total = b.GetTotal()
		// The server's rate covers the whole batch, also the part issued before we watched.
		p.updateRate(b.GetIssued(), b.GetIssueRate())
	})
	if p != nil && last != nil {
		p.doneRate(last.GetIssued(), last.GetIssueRate())
	}
	return last, err
}

func batches(fs *flag.FlagSet) runFunc {
	incident := fs.String("incident", "", "only batches of this incident")
	return func(ctx context.Context, c *conn) error {
		req := &enrollv1.ListBatchesRequest{PageSize: 1000}
		if *incident != "" {
			req.Incident = "incidents/" + *incident
		}
		admin := c.admin()
		printBatchHeader(c.env.Stdout)
		for {
			resp, err := admin.ListBatches(ctx, req)
			if err != nil {
				return fmt.Errorf("failed to list batches: %w", err)
			}
			for _, b := range resp.GetBatches() {
				printBatch(c.env.Stdout, b)
			}
			if resp.GetNextPageToken() == "" {
				return nil
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
}

func purge(fs *flag.FlagSet) runFunc {
	batch := fs.String("batch", "", "batch id (required)")
	return func(ctx context.Context, c *conn) error {
		if *batch == "" {
			return errors.New("--batch is required")
		}
		resp, err := c.admin().PurgeBatchExport(ctx, &enrollv1.PurgeBatchExportRequest{Name: "batches/" + *batch})
		if err != nil {
			return fmt.Errorf("failed to purge the export of batch %s: %w", *batch, err)
		}
		printBatchHeader(c.env.Stdout)
		printBatch(c.env.Stdout, resp.GetBatch())
		fmt.Fprintf(c.env.Stderr, "WARNING: the export secret of batch %s is destroyed: its plaintext codes can never be produced again.\n", *batch)
		return nil
	}
}

const batchFormat = "%-28s %-40s %-9s %21s %-20s %s\n"

func printBatchHeader(w io.Writer) {
	fmt.Fprintf(w, batchFormat, "batch", "incident/cohort", "state", "issued/total", "redeem-by", "export-purged")
}

func printBatch(w io.Writer, b *enrollv1.Batch) {
	// incident/cohort: listing all incidents, the cohort id alone would be ambiguous.
	cohort := strings.Replace(strings.TrimPrefix(b.GetCohort(), "incidents/"), "/cohorts/", "/", 1)
	redeemBy := "-"
	if b.GetRedeemByTime() != nil {
		redeemBy = b.GetRedeemByTime().AsTime().UTC().Format(time.RFC3339)
	}
	purged := "no"
	if b.GetExportPurged() {
		purged = "yes"
	}
	fmt.Fprintf(w, batchFormat, lastSegment(b.GetName()), cohort, strings.TrimPrefix(b.GetState().String(), "BATCH_STATE_"),
		fmt.Sprintf("%d/%d", b.GetIssued(), b.GetTotal()), redeemBy, purged)
}
