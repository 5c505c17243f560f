// Command enrollctl is the operator and finance command line for enrolld.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/idprotect/enroll/internal/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := ctl.Run(ctx, os.Args[1:], ctl.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}); err != nil {
		fmt.Fprintln(os.Stderr, "enrollctl:", err)
		os.Exit(1)
	}
}
