// Package bench is enrollbench: end-to-end benchmarks that drive the real enrolld binary as a
// subprocess, side by side with the raw database driver on the same machine and the same rows.
//
// enrollbench issue measures streaming import + background issuance through gRPC against the
// fastest plain-driver insert of the same rows (SQLite: prepared multi-row INSERTs in
// 10k-row transactions; PostgreSQL: COPY), and samples the server's RSS from /proc. It holds
// no rows in memory beyond one chunk, so its own memory is flat in N too. Linux only.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/idprotect/enroll/internal/eligibility"
)

const usage = `usage: enrollbench issue --rows N [flags]

Measures import + issuance through the real enrolld (gRPC, subprocess) against the raw driver
inserting the same rows, on one engine, in one run. Prints a markdown table.

  enrollbench issue --rows 1000000
  enrollbench issue --rows 1M --engine postgres --postgres-dsn postgres://user:pass@127.0.0.1/db?sslmode=disable
  enrollbench issue --rss-series 1M,2M,5M        # system only: peak RSS per N and its slope

flags:
`

// Main runs enrollbench with args (without the program name).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if os.Getenv(bareEnv) != "" {
		return bareMain(ctx, args, stderr)
	}
	if len(args) == 0 || (args[0] != "issue" && args[0] != "serve") {
		fmt.Fprint(stderr, usage)
		fmt.Fprint(stderr, "\n"+serveUsage)
		if len(args) == 0 {
			return errors.New("no command given; the commands are issue and serve")
		}
		return fmt.Errorf("unknown command %q; the commands are issue and serve", args[0])
	}
	var (
		o   *issueOptions
		so  *serveOptions
		err error
	)
	if args[0] == "serve" {
		if so, err = parseServeFlags(args[1:], stderr); err != nil {
			return err
		}
		o = &so.issueOptions
	} else if o, err = parseIssueFlags(args[1:], stderr); err != nil {
		return err
	}
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if so != nil {
		return runServe(ctx, so, stdout, stderr)
	}
	return runIssue(ctx, o, stdout, stderr)
}

type issueOptions struct {
	rows        int64
	series      []int64
	engine      string
	pgDSN       string
	seed        uint64
	keep        bool
	dir         string
	enrolld     string
	rawChunk    int
	rawStmtRows int
	skipRaw     bool
	cpuProfile  string
	rssCSV      string
	sampleEvery time.Duration
	progress    time.Duration
	serverEnv   []string
}

func parseIssueFlags(args []string, stderr io.Writer) (*issueOptions, error) {
	fs := flag.NewFlagSet("enrollbench issue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	o := &issueOptions{}
	rows := fs.String("rows", "1000000", "eligibility rows to generate, import and issue (1000000, 1M, 500k)")
	series := fs.String("rss-series", "", "instead of one run, run the system alone at each of these row counts (e.g. 1M,2M,5M) and report peak RSS per N and its slope")
	o.sharedFlags(fs)
	fs.IntVar(&o.rawChunk, "raw-chunk", 0, "rows per raw transaction (default 10000 on SQLite, 50000 on PostgreSQL)")
	fs.IntVar(&o.rawStmtRows, "raw-stmt-rows", 250, "rows per prepared multi-row INSERT in the raw SQLite baseline")
	fs.BoolVar(&o.skipRaw, "skip-raw", false, "measure the system only")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (client side and raw baseline, not the server) to this file")
	fs.StringVar(&o.rssCSV, "rss-csv", "", "write every RSS sample (seconds,phase,MiB) of the server to this CSV file")
	fs.DurationVar(&o.sampleEvery, "sample-every", 250*time.Millisecond, "RSS sampling interval")
	fs.DurationVar(&o.progress, "progress-every", 5*time.Second, "progress line interval on stderr")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	var err error
	if o.rows, err = ParseCount(*rows); err != nil {
		return nil, fmt.Errorf("--rows: %w", err)
	}
	if *series != "" {
		if o.series, err = ParseCounts(*series); err != nil {
			return nil, fmt.Errorf("--rss-series: %w", err)
		}
		o.skipRaw = true
	}
	if err := o.checkEngine(); err != nil {
		return nil, err
	}
	if o.rawChunk == 0 {
		o.rawChunk = 10000
		if o.engine == "postgres" {
			o.rawChunk = 50000
		}
	}
	if o.rawChunk < 1 || o.rawStmtRows < 1 || o.rawStmtRows > 2000 {
		return nil, errors.New("--raw-chunk must be positive and --raw-stmt-rows between 1 and 2000")
	}
	if o.sampleEvery < 10*time.Millisecond {
		return nil, errors.New("--sample-every must be at least 10ms")
	}
	return o, nil
}

// sharedFlags are the flags of every command that starts enrolld on a fresh database.
func (o *issueOptions) sharedFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.engine, "engine", "sqlite", "sqlite or postgres")
	fs.StringVar(&o.pgDSN, "postgres-dsn", os.Getenv("ENROLL_TEST_POSTGRES_DSN"), "PostgreSQL URL for --engine postgres (default $ENROLL_TEST_POSTGRES_DSN); each run uses fresh schemas in it")
	fs.Uint64Var(&o.seed, "seed", 1, "generator seed: the same seed and rows give the same file")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (file, databases, server log) and PostgreSQL schemas")
	fs.StringVar(&o.dir, "dir", "", "where to create the work directory (default the system temp dir); a 10M-row SQLite run needs a few GB")
	fs.StringVar(&o.enrolld, "enrolld", "", "enrolld binary to run (default: go build ./cmd/enrolld into the work directory)")
	fs.Func("server-env", "extra KEY=VALUE for enrolld's environment, repeatable (e.g. ENROLL_ISSUE_CHUNK=20000, GOMEMLIMIT=200MiB)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return errors.New("want KEY=VALUE")
		}
		o.serverEnv = append(o.serverEnv, v)
		return nil
	})
}

// parseFlags parses args and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func (o *issueOptions) checkEngine() error {
	switch o.engine {
	case "sqlite":
	case "postgres":
		if o.pgDSN == "" {
			return errors.New("--engine postgres needs --postgres-dsn or ENROLL_TEST_POSTGRES_DSN")
		}
		if _, err := WithSearchPath(o.pgDSN, "x"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--engine must be sqlite or postgres, not %q", o.engine)
	}
	return nil
}

// startCPUProfile profiles this process into path until the returned stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// env is the state shared by the runs of one invocation.
type env struct {
	o       *issueOptions
	stdout  io.Writer
	stderr  io.Writer
	work    string
	binary  string
	secrets Secrets
	schemas *pgSchemas
	prog    *progress
	rssCSV  io.Writer
}

func runIssue(ctx context.Context, o *issueOptions, stdout, stderr io.Writer) (err error) {
	e, finish, err := openEnv(ctx, o, stdout, stderr)
	if err != nil {
		return err
	}
	defer func() { finish(err) }()
	if o.rssCSV != "" {
		f, err := os.Create(o.rssCSV)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintln(f, "engine,rows,seconds,phase,rss_mib")
		e.rssCSV = f
	}
	m := describeMachine(ctx, o, e.work)
	maxRows := o.rows
	if o.series != nil {
		maxRows = o.series[len(o.series)-1]
	}
	in, err := e.generate(maxRows)
	if err != nil {
		return err
	}
	if o.series != nil {
		return e.series(ctx, m, in)
	}
	return e.single(ctx, m, in)
}

// openEnv makes the work directory (and the PostgreSQL schema registry), fresh secrets and
// the enrolld binary. finish(err) cleans up: everything goes after a good run, the server
// logs stay after a failed one, and --keep keeps it all.
func openEnv(ctx context.Context, o *issueOptions, stdout, stderr io.Writer) (_ *env, finish func(error), err error) {
	e := &env{o: o, stdout: stdout, stderr: stderr, prog: newProgress(stderr, o.progress)}
	if e.work, err = os.MkdirTemp(o.dir, "enrollbench-*"); err != nil {
		return nil, nil, err
	}
	finish = func(err error) {
		if e.schemas != nil {
			if o.keep {
				fmt.Fprintf(stderr, "kept PostgreSQL schemas %s\n", strings.Join(e.schemas.created, ", "))
			} else if derr := e.schemas.dropAll(context.WithoutCancel(ctx)); derr != nil {
				fmt.Fprintf(stderr, "warning: %v\n", derr)
			}
		}
		switch {
		case o.keep:
			fmt.Fprintf(stderr, "kept work directory %s\n", e.work)
		case err != nil:
			// Keep the server logs of a failed run, drop the bulky rest.
			entries, _ := os.ReadDir(e.work)
			for _, de := range entries {
				if !strings.HasSuffix(de.Name(), ".log") {
					_ = os.RemoveAll(filepath.Join(e.work, de.Name()))
				}
			}
			fmt.Fprintf(stderr, "server logs of the failed run kept in %s\n", e.work)
		default:
			_ = os.RemoveAll(e.work)
		}
	}
	defer func() {
		if err != nil {
			finish(err)
		}
	}()
	if o.engine == "postgres" {
		e.schemas = &pgSchemas{dsn: o.pgDSN}
	}
	if e.secrets, err = NewSecrets(); err != nil {
		return nil, nil, err
	}
	e.binary = o.enrolld
	if e.binary == "" {
		fmt.Fprintln(stderr, "building enrolld...")
		if e.binary, err = BuildEnrolld(ctx, e.work); err != nil {
			return nil, nil, err
		}
	}
	return e, finish, nil
}

// input is the generated eligibility file.
type input struct {
	path string
	rows int64
	size int64
	took time.Duration
}

func (e *env) generate(rows int64) (*input, error) {
	path := filepath.Join(e.work, fmt.Sprintf("eligibility-%d-seed%d.csv", rows, e.o.seed))
	fmt.Fprintf(e.stderr, "generating %s rows (seed %d) into %s...\n", groupThousands(rows), e.o.seed, path)
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := eligibility.Generate(f, eligibility.GenerateOptions{Rows: rows, Seed: e.o.seed}); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return &input{path: path, rows: rows, size: st.Size(), took: time.Since(start)}, nil
}

func (e *env) single(ctx context.Context, m machine, in *input) error {
	sys, sysSize, err := e.systemOnce(ctx, in, in.rows)
	if err != nil {
		return err
	}
	var (
		raw     *RawResult
		rawSize int64
	)
	if !e.o.skipRaw {
		if raw, rawSize, err = e.rawOnce(ctx, in); err != nil {
			return err
		}
	}
	writeSingleReport(e.stdout, m, e.o, in, sys, sysSize, raw, rawSize)
	return nil
}

func (e *env) series(ctx context.Context, m machine, in *input) error {
	var results []*SystemResult
	for _, n := range e.o.series {
		res, _, err := e.systemOnce(ctx, in, n)
		if err != nil {
			return err
		}
		results = append(results, res)
	}
	writeSeriesReport(e.stdout, m, e.o, in, results)
	return nil
}
