package ctl

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
)

func export(fs *flag.FlagSet) runFunc {
	batch := fs.String("batch", "", "batch id")
	out := fs.String("o", "", "output CSV file (created with mode 0600; refuses to overwrite)")
	return func(ctx context.Context, c *conn) error {
		if *batch == "" || *out == "" {
			return errors.New("--batch and -o are required")
		}
		return exportBatch(ctx, c, *batch, *out)
	}
}

func exportBatch(ctx context.Context, c *conn, batch, out string) (err error) {
	admin := c.admin()
	b, err := admin.GetBatch(ctx, &enrollv1.GetBatchRequest{Name: "batches/" + batch})
	if err != nil {
		return fmt.Errorf("failed to read batch: %w", err)
	}
	total := b.GetBatch().GetIssued()
	stream, err := admin.ExportBatchCodes(ctx, &enrollv1.ExportBatchCodesRequest{Name: "batches/" + batch})
	if err != nil {
		return fmt.Errorf("failed to start export: %w", err)
	}
	// The file holds plaintext codes: owner-only, and never clobber an earlier export.
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("failed to create %s: %w", out, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(out)
		}
	}()
	w := csv.NewWriter(f)
	if err := w.Write([]string{"external_ref", "cohort", "code", "redeem_by"}); err != nil {
		return err
	}
	p := newProgress(c.env.Stderr, "export", total)
	var n int64
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && n == 0 {
			// A stream reports refusals (purged, still running) on the first receive.
			return fmt.Errorf("failed to export batch %s: %w", batch, err)
		}
		if err != nil {
			return fmt.Errorf("export interrupted after %d rows: %w", n, err)
		}
		for _, r := range chunk.GetCodes() {
			if err := w.Write([]string{r.GetExternalRef(), r.GetCohort(), r.GetCode(), r.GetRedeemByTime().AsTime().UTC().Format(time.RFC3339)}); err != nil {
				return err
			}
		}
		n += int64(len(chunk.GetCodes()))
		p.update(n)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	p.done(n)
	if n != total {
		return fmt.Errorf("exported %d rows but the batch issued %d", n, total)
	}
	return nil
}
