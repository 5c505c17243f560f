// Package ctl is enrollctl: the operator and finance command line. It talks to enrolld over
// gRPC with client credentials, like any other API client, so it has no privileged path
// into the database.
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
)

// Env is what a command runs with.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

type command struct {
	summary string
	run     func(ctx context.Context, c *conn, args []string) error
}

var commands = map[string]command{
	"client-create": {"create an API client and print its secret once", clientCreate},
	"counts":        {"print code and enrollment counts of an incident", counts},
	"export":        {"write a batch's mail-house file (external_ref,cohort,code,redeem_by) as CSV", export},
}

// Run executes enrollctl with args (without the program name).
func Run(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("enrollctl", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	addr := fs.String("addr", envOr(env.Getenv, "ENROLL_ADDR", "127.0.0.1:9090"), "enrolld gRPC address (ENROLL_ADDR)")
	clientID := fs.String("client-id", envOr(env.Getenv, "ENROLL_CLIENT_ID", "admin"), "API client id (ENROLL_CLIENT_ID); the secret is read from ENROLL_CLIENT_SECRET")
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: enrollctl [--addr host:port] [--client-id id] <command> [flags]\n\ncommands:\n")
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(env.Stderr, "  %-14s %s\n", n, commands[n].summary)
		}
		fmt.Fprintf(env.Stderr, "\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no command given")
	}
	cmd, ok := commands[fs.Arg(0)]
	if !ok {
		fs.Usage()
		return fmt.Errorf("unknown command %q", fs.Arg(0))
	}
	secret := env.Getenv("ENROLL_CLIENT_SECRET")
	if secret == "" {
		return errors.New("set ENROLL_CLIENT_SECRET to the client's secret (it is never taken as a flag, so it stays out of shell history and process lists)")
	}
	cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("failed to connect to %s: %w", *addr, err)
	}
	defer cc.Close()
	tok, err := enrollv1.NewAuthServiceClient(cc).Token(ctx, &enrollv1.TokenRequest{GrantType: "client_credentials", ClientId: *clientID, ClientSecret: secret})
	if err != nil {
		return fmt.Errorf("failed to authenticate as %s: %w", *clientID, err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.GetAccessToken())
	return cmd.run(ctx, &conn{cc: cc, env: env}, fs.Args()[1:])
}

type conn struct {
	cc  *grpc.ClientConn
	env Env
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func clientCreate(ctx context.Context, c *conn, args []string) error {
	fs := flag.NewFlagSet("client-create", flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	role := fs.String("role", "", "admin, partner or finance")
	partner := fs.String("partner", "", "partner id, required for --role partner")
	name := fs.String("name", "", "description, e.g. \"vendor production integration\"")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, ok := enrollv1.Role_value["ROLE_"+strings.ToUpper(*role)]
	if !ok || r == 0 {
		return errors.New("--role must be admin, partner or finance")
	}
	cl := &enrollv1.Client{Role: enrollv1.Role(r), DisplayName: *name}
	if *partner != "" {
		cl.Partner = "partners/" + *partner
	}
	resp, err := enrollv1.NewAdminServiceClient(c.cc).CreateClient(ctx, &enrollv1.CreateClientRequest{Client: cl})
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "client_id=%s\nclient_secret=%s\n", strings.TrimPrefix(resp.GetClient().GetName(), "clients/"), resp.GetClientSecret())
	fmt.Fprintln(c.env.Stderr, "The secret is shown once and only its hash is stored: hand it over now.")
	return nil
}

func counts(ctx context.Context, c *conn, args []string) error {
	fs := flag.NewFlagSet("counts", flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	incident := fs.String("incident", "", "incident id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *incident == "" {
		return errors.New("--incident is required")
	}
	resp, err := enrollv1.NewReportingServiceClient(c.cc).GetCounts(ctx, &enrollv1.GetCountsRequest{Incident: "incidents/" + *incident})
	if err != nil {
		return fmt.Errorf("failed to read counts: %w", err)
	}
	w := c.env.Stdout
	fmt.Fprintf(w, "%-40s %9s %11s %9s %8s %8s | %8s %7s %8s %9s %7s\n", "cohort", "issued", "outstanding", "redeemed", "expired", "revoked", "pending", "active", "expired", "cancelled", "lapsed")
	line := func(name string, k *enrollv1.CodeCounts, e *enrollv1.EnrollmentCounts) {
		fmt.Fprintf(w, "%-40s %9d %11d %9d %8d %8d | %8d %7d %8d %9d %7d\n", name, k.GetIssued(), k.GetOutstanding(), k.GetRedeemed(), k.GetExpired(), k.GetRevoked(),
			e.GetPending(), e.GetActive(), e.GetExpired(), e.GetCancelled(), e.GetLapsed())
	}
	for _, cc := range resp.GetCohorts() {
		line(cc.GetCohort()[strings.LastIndex(cc.GetCohort(), "/")+1:], cc.GetCodes(), cc.GetEnrollments())
	}
	line("TOTAL", resp.GetCodes(), resp.GetEnrollments())
	return nil
}
