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
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/apiclient"
)

// Env is what a command runs with.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// command is one subcommand. setup declares its flags and returns the function that runs
// it; Run parses the flags before connecting, so a typo or -h costs no round trip and needs
// no secret.
type command struct {
	summary string
	// synopsis is the argument line of the command's usage text; help, if set, is a
	// paragraph printed under it.
	synopsis, help string
	// offline commands never connect: they work without a server or a secret.
	offline bool
	// args is how many arguments may follow the flags (audit verify's FILE); the command
	// reads them from its flag set.
	args  int
	setup func(fs *flag.FlagSet) runFunc
}

// runFunc runs a command whose flags are parsed. c.cc is nil for offline commands.
type runFunc func(ctx context.Context, c *conn) error

var commands = map[string]command{
	"client-create": {summary: "create an API client and print its secret once",
		synopsis: "--role admin|partner|finance [--partner ID] [--name TEXT]", setup: clientCreate},
	"counts": {summary: "print code and enrollment counts of an incident",
		synopsis: "--incident ID", setup: counts},
	"export": {summary: "write a batch's mail-house file (external_ref,cohort,code,redeem_by) as CSV",
		synopsis: "--batch ID -o FILE", setup: export},
	"gen-eligibility": {summary: "write a synthetic eligibility CSV (offline: no server needed)",
		synopsis: "--rows N --seed S [--malformed K] [--overlap-per-mille P] [-o FILE] [--gzip]",
		help:     genHelp, offline: true, setup: genEligibility},
	"import": {summary: "stream an eligibility file (CSV or .gz) into an incident",
		synopsis: "--incident ID --file PATH [--max-errors N]", help: importHelp, setup: importFile},
	"issue": {summary: "start issuing codes to a cohort, or to every offered cohort of an incident",
		synopsis: "(--cohort COHORT_ID --incident ID | --incident ID) [--wait]", help: issueHelp, setup: issue},
	"batches": {summary: "list issuance batches, newest first",
		synopsis: "[--incident ID]", setup: batches},
	"purge": {summary: "destroy a batch's export secret: its plaintext codes can never be produced again",
		synopsis: "--batch ID", help: purgeHelp, setup: purge},
	"recount": {summary: "compare an incident's counters with a recount (non-zero exit on a difference)",
		synopsis: "--incident ID", setup: recount},
	"repair-counters": {summary: "replace an incident's counters with a recount (admin; audited)",
		synopsis: "--incident ID", setup: repairCounters},
	"billable": {summary: "count a partner's billable member-months, or write the CSV behind the number",
		synopsis: "--partner ID --month YYYY-MM [-o FILE]", help: billableHelp, setup: billable},
	"reconcile": {summary: "compare a vendor's invoice with the billable set (non-zero exit on a difference)",
		synopsis: "--partner ID --month YYYY-MM --invoice FILE [--max-differences N]", help: reconcileHelp, setup: reconcile},
	"audit export": {summary: "write the audit chain as JSON lines",
		synopsis: "-o FILE", setup: auditExport},
	"audit verify": {summary: "check an audit export offline: names the first edited, removed or reordered entry",
		synopsis: "FILE", help: auditVerifyHelp, offline: true, args: 1, setup: auditVerify},
}

// Run executes enrollctl with args (without the program name).
func Run(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("enrollctl", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	addr := fs.String("addr", envOr(env.Getenv, "ENROLL_ADDR", "127.0.0.1:9090"), "enrolld gRPC address (ENROLL_ADDR)")
	clientID := fs.String("client-id", envOr(env.Getenv, "ENROLL_CLIENT_ID", "admin"), "API client id (ENROLL_CLIENT_ID); the secret is read from ENROLL_CLIENT_SECRET")
	var tr apiclient.Transport
	fs.BoolVar(&tr.TLS, "tls", truthy(env.Getenv("ENROLL_TLS")), "connect with TLS, trusting the system roots unless --ca-file is given (ENROLL_TLS=true)")
	fs.StringVar(&tr.CAFile, "ca-file", env.Getenv("ENROLL_CA_FILE"), "PEM file of the CA(s) that signed enrolld's certificate; implies --tls (ENROLL_CA_FILE)")
	fs.StringVar(&tr.ServerName, "tls-server-name", env.Getenv("ENROLL_TLS_SERVER_NAME"), "name to check the server's certificate against, if not the --addr host (ENROLL_TLS_SERVER_NAME)")
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: enrollctl [--addr host:port] [--client-id id] [--tls] [--ca-file FILE] <command> [flags]\n\ncommands:\n")
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(env.Stderr, "  %-16s %s\n", n, commands[n].summary)
		}
		fmt.Fprintf(env.Stderr, "\nRun enrollctl <command> -h for a command's flags.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return helpIsNotAnError(err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no command given")
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	// A command of a group (audit export, audit verify) is named by two words.
	if _, ok := commands[name]; !ok && len(rest) > 0 {
		if _, ok := commands[name+" "+rest[0]]; ok {
			name, rest = name+" "+rest[0], rest[1:]
		}
	}
	cmd, ok := commands[name]
	if !ok {
		fs.Usage()
		return fmt.Errorf("unknown command %q", name)
	}
	cfs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfs.SetOutput(env.Stderr)
	cfs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: enrollctl %s %s\n\n%s\n", name, cmd.synopsis, cmd.summary)
		if cmd.help != "" {
			fmt.Fprintf(env.Stderr, "\n%s\n", cmd.help)
		}
		fmt.Fprintf(env.Stderr, "\nflags:\n")
		cfs.PrintDefaults()
	}
	run := cmd.setup(cfs)
	if err := cfs.Parse(rest); err != nil {
		return helpIsNotAnError(err)
	}
	if cfs.NArg() > cmd.args {
		return fmt.Errorf("%s: unexpected argument %q (flags first; see enrollctl %s -h)", name, cfs.Arg(cmd.args), name)
	}
	c := &conn{env: env}
	if cmd.offline {
		return run(ctx, c)
	}
	secret := env.Getenv("ENROLL_CLIENT_SECRET")
	if secret == "" {
		return errors.New("set ENROLL_CLIENT_SECRET to the client's secret (it is never taken as a flag, so it stays out of shell history and process lists)")
	}
	creds, err := tr.Credentials()
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("failed to connect to %s: %w", *addr, err)
	}
	defer cc.Close()
	tok, err := enrollv1.NewAuthServiceClient(cc).Token(ctx, &enrollv1.TokenRequest{GrantType: "client_credentials", ClientId: *clientID, ClientSecret: secret})
	if err != nil {
		return fmt.Errorf("failed to authenticate as %s: %w", *clientID, err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.GetAccessToken())
	c.cc = cc
	return run(ctx, c)
}

// helpIsNotAnError turns -h into success: the usage text was printed, which is what was
// asked for. Other flag errors were printed by the flag package and are returned.
func helpIsNotAnError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

type conn struct {
	cc  *grpc.ClientConn
	env Env
}

func (c *conn) admin() enrollv1.AdminServiceClient { return enrollv1.NewAdminServiceClient(c.cc) }

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func clientCreate(fs *flag.FlagSet) runFunc {
	role := fs.String("role", "", "admin, partner or finance")
	partner := fs.String("partner", "", "partner id, required for --role partner")
	name := fs.String("name", "", "description, e.g. \"vendor production integration\"")
	return func(ctx context.Context, c *conn) error {
		r, ok := enrollv1.Role_value["ROLE_"+strings.ToUpper(*role)]
		if !ok || r == 0 {
			return errors.New("--role must be admin, partner or finance")
		}
		cl := &enrollv1.Client{Role: enrollv1.Role(r), DisplayName: *name}
		if *partner != "" {
			cl.Partner = "partners/" + *partner
		}
		resp, err := c.admin().CreateClient(ctx, &enrollv1.CreateClientRequest{Client: cl})
		if err != nil {
			return fmt.Errorf("failed to create client: %w", err)
		}
		fmt.Fprintf(c.env.Stdout, "client_id=%s\nclient_secret=%s\n", strings.TrimPrefix(resp.GetClient().GetName(), "clients/"), resp.GetClientSecret())
		fmt.Fprintln(c.env.Stderr, "The secret is shown once and only its hash is stored: hand it over now.")
		return nil
	}
}

func counts(fs *flag.FlagSet) runFunc {
	incident := fs.String("incident", "", "incident id")
	return func(ctx context.Context, c *conn) error {
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
			line(lastSegment(cc.GetCohort()), cc.GetCodes(), cc.GetEnrollments())
		}
		line("TOTAL", resp.GetCodes(), resp.GetEnrollments())
		return nil
	}
}

// lastSegment returns the id at the end of a resource name.
func lastSegment(name string) string { return name[strings.LastIndex(name, "/")+1:] }

func truthy(v string) bool {
	b, _ := strconv.ParseBool(v)
	return b
}
