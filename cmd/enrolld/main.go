// Command enrolld serves the enrollment API: gRPC and the REST gateway in one process.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/idprotect/enroll/internal/clock"
	"github.com/idprotect/enroll/internal/config"
	"github.com/idprotect/enroll/internal/demo"
	"github.com/idprotect/enroll/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "enrolld:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("invalid log level %q: %w", cfg.LogLevel, err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	if cfg.Mode == config.ModeDemo {
		log = slog.New(slog.NewTextHandler(stderr, hopts))
	} else {
		log = slog.New(slog.NewJSONHandler(stderr, hopts))
	}
	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("failed to listen for gRPC on %s: %w", cfg.GRPCAddr, err)
	}
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("failed to listen for HTTP on %s: %w", cfg.HTTPAddr, err)
	}
	app, err := server.Assemble(ctx, cfg, log, clock.Real{}, grpcLis, httpLis)
	if err != nil {
		return err
	}
	defer app.Close()
	if cfg.Mode == config.ModeDemo {
		go seedDemo(ctx, app, log, stdout)
	}
	return app.Serve(ctx)
}

func seedDemo(ctx context.Context, app *server.Assembled, log *slog.Logger, stdout io.Writer) {
	conn, err := grpc.NewClient(server.DialTarget(app.GRPCAddr()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Error("demo seeding failed", "err", err)
		return
	}
	defer conn.Close()
	res, err := demo.Seed(ctx, conn, app.Config.BootstrapAdminID, app.Config.BootstrapAdminSecret)
	if err != nil {
		log.Error("demo seeding failed", "err", err)
		return
	}
	demo.Print(stdout, res, "http://"+server.DialTarget(app.HTTPAddr()))
}
