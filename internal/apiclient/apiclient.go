// Package apiclient holds the client-side flows that several API clients share (enrollctl,
// the demo seeder, tests): streaming an import in chunks and waiting for a batch.
package apiclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
)

// ImportChunkRows is how many rows go in one ImportSubjects message.
const ImportChunkRows = 2000

// Import streams records to ImportSubjects in chunks. next returns the next record, or
// io.EOF at the end. progress, if set, is called after every chunk with the rows sent.
func Import(ctx context.Context, admin enrollv1.AdminServiceClient, incident string, maxErrors int64,
	next func() (*enrollv1.SubjectRecord, error), progress func(sent int64)) (*enrollv1.ImportSubjectsResponse, error) {
	stream, err := admin.ImportSubjects(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to start import: %w", err)
	}
	first := true
	var sent int64
	send := func(chunk []*enrollv1.SubjectRecord) error {
		req := &enrollv1.ImportSubjectsRequest{Subjects: chunk}
		if first {
			req.Parent, req.MaxErrors, first = "incidents/"+incident, maxErrors, false
		}
		if err := stream.Send(req); err != nil {
			// io.EOF: the server ended the stream (an error, or a stop at max_errors);
			// CloseAndRecv below returns which.
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return err
		}
		sent += int64(len(chunk))
		if progress != nil {
			progress(sent)
		}
		return nil
	}
	chunk := make([]*enrollv1.SubjectRecord, 0, ImportChunkRows)
	for {
		rec, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		chunk = append(chunk, rec)
		if len(chunk) == ImportChunkRows {
			if err := send(chunk); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("import failed: %w", err)
			}
			chunk = make([]*enrollv1.SubjectRecord, 0, ImportChunkRows)
		}
	}
	if len(chunk) > 0 || first {
		if err := send(chunk); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("import failed: %w", err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("import failed: %w", err)
	}
	return resp, nil
}

// Records adapts a slice to Import's next function.
func Records(recs []*enrollv1.SubjectRecord) func() (*enrollv1.SubjectRecord, error) {
	i := 0
	return func() (*enrollv1.SubjectRecord, error) {
		if i == len(recs) {
			return nil, io.EOF
		}
		i++
		return recs[i-1], nil
	}
}

// WaitBatch polls a batch until it leaves RUNNING. progress, if set, sees every poll.
func WaitBatch(ctx context.Context, admin enrollv1.AdminServiceClient, name string, poll time.Duration, progress func(*enrollv1.Batch)) (*enrollv1.Batch, error) {
	for {
		resp, err := admin.GetBatch(ctx, &enrollv1.GetBatchRequest{Name: name})
		if err != nil {
			return nil, fmt.Errorf("failed to read %s: %w", name, err)
		}
		b := resp.GetBatch()
		if progress != nil {
			progress(b)
		}
		switch b.GetState() {
		case enrollv1.BatchState_BATCH_STATE_SUCCEEDED:
			return b, nil
		case enrollv1.BatchState_BATCH_STATE_FAILED:
			return b, fmt.Errorf("%s failed: %s", name, b.GetError())
		}
		select {
		case <-ctx.Done():
			return b, ctx.Err()
		case <-time.After(poll):
		}
	}
}
