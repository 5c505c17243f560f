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
	// Registered before serving, so a SIGHUP from here on never takes the default action
	// (exit).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHangup(ctx, hup, app, log)
	if cfg.Mode == config.ModeDemo {
		go seedDemo(ctx, app, log, stdout)
	}
	return app.Serve(ctx)
}

// reloadOnHangup re-reads the TLS certificate on SIGHUP, the usual signal a certificate
// manager sends after renewing.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, app *server.Assembled, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := app.ReloadTLS(); err != nil {
				log.Error("SIGHUP: TLS certificate not reloaded", "err", err)
				continue
			}
			log.Info("SIGHUP: TLS certificate files re-read")
		}
	}
}

func seedDemo(ctx context.Context, app *server.Assembled, log *slog.Logger, stdout io.Writer) {
	conn, err := grpc.NewClient(server.DialTarget(app.GRPCAddr()), grpc.WithTransportCredentials(app.LoopbackCredentials()))
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
	scheme := "http://"
	if app.TLS() {
		scheme = "https://"
	}
	demo.Print(stdout, res, scheme+server.DialTarget(app.HTTPAddr()))
}
