package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProductionWithoutSecretsRefusesToStart(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
		func(string) string { return "" }, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "ENROLL_MASTER_KEY") {
		t.Fatalf("want a start-up error naming the missing secrets, got %v", err)
	}
}

func TestDemoStartsSeedsAndStops(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuf
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--demo", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--db-dsn", filepath.Join(dir, "demo.db"), "--dev-keys-file", filepath.Join(dir, "keys.json")},
			func(string) string { return "" }, &out, &errb)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "DEMO DATA") {
		if time.Now().After(deadline) {
			t.Fatalf("demo never printed its sheet; log:\n%s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	log := errb.String()
	if !strings.Contains(log, "DEMO MODE: GENERATED development secrets") {
		t.Errorf("generated demo secrets must be announced; log:\n%s", log)
	}
	if !strings.Contains(log, "stopped") {
		t.Errorf("shutdown not logged; log:\n%s", log)
	}
}
