package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Target50M is the row count the product spec sizes for; its time is extrapolated.
const Target50M = 50_000_000

func writeMachine(w io.Writer, m machine, o *issueOptions, title string) {
	fmt.Fprintf(w, "\n## enrollbench issue: %s (%s)\n\n", title, m.date.UTC().Format("2006-01-02 15:04 UTC"))
	cpu := m.cpuModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s RAM, %s, %s, %s; work dir %s.\n\n", m.cpus, cpu, m.memTotal, m.kernel, m.goVer, m.engine, m.diskFree)
}

// singleTable writes the headline table of a single run.
func singleTable(w io.Writer, engine string, sys *SystemResult, raw *RawResult) {
	fmt.Fprintln(w, "| engine | N | system import rows/s | system issue codes/s | system combined rows/s | raw rows/s | system/raw | peak RSS MiB |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	rawRate, ratio := "n/a", "n/a"
	if raw != nil {
		r := Rate(raw.Rows, raw.Total)
		rawRate = fmtRate(r)
		ratio = fmt.Sprintf("%.2f", sys.Combined()/r)
	}
	fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", engine, fmtRows(sys.Rows),
		fmtRate(Rate(sys.Rows, sys.Import)), fmtRate(Rate(sys.Codes, sys.Issue)), fmtRate(sys.Combined()),
		rawRate, ratio, fmtMiB(max(sys.HWM, sys.PeakRSS)))
}

func cores(cpu, wall time.Duration) string {
	if wall <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", cpu.Seconds()/wall.Seconds())
}

func writeSingleReport(w io.Writer, m machine, o *issueOptions, in *input, sys *SystemResult, sysSize int64, raw *RawResult, rawSize int64) {
	writeMachine(w, m, o, fmt.Sprintf("%s, %s rows, seed %d", o.engine, groupThousands(in.rows), o.seed))
	singleTable(w, o.engine, sys, raw)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- Input: %s rows, %s MiB of CSV (generated in %s).\n", groupThousands(in.rows), fmtMiB(in.size), fmtDur(in.took))
	fmt.Fprintf(w, "- System (enrolld over gRPC): import %s (%s rows/s) + issue %s (%s codes/s, %d batches) = %s (%s rows/s).\n",
		fmtDur(sys.Import), fmtRate(Rate(sys.Rows, sys.Import)), fmtDur(sys.Issue), fmtRate(Rate(sys.Codes, sys.Issue)), sys.Batches,
		fmtDur(sys.Import+sys.Issue), fmtRate(sys.Combined()))
	fmt.Fprintf(w, "  Rows: %s subjects, %s cohort memberships, %s codes; database %s MiB.\n",
		groupThousands(sys.Subjects), groupThousands(sys.Memberships), groupThousands(sys.Codes), fmtMiB(sysSize))
	engineNote := ""
	if o.engine == "postgres" {
		engineNote = " (PostgreSQL's own processes not included)"
	}
	fmt.Fprintf(w, "  Server CPU%s: import %s (%s cores), issue %s (%s cores). enrollbench CPU during the import (CSV, protobuf): %s.\n",
		engineNote, fmtDur(sys.CPUImport), cores(sys.CPUImport, sys.Import), fmtDur(sys.CPUIssue), cores(sys.CPUIssue, sys.Issue), fmtDur(sys.ClientCPUImport))
	if o.engine == "sqlite" {
		// SQLite writes from inside enrolld; PostgreSQL's writes happen in its own processes.
		fmt.Fprintf(w, "  Server writes to storage (WAL, checkpoints): import %s MiB, issue %s MiB.\n", fmtMiB(sys.WrittenImport), fmtMiB(sys.WrittenIssue))
	}
	fmt.Fprintf(w, "  Server RSS: %s MiB at the end of the import, %s MiB at the end of issuance, sampled peak %s MiB (%d samples), VmHWM %s MiB.\n",
		fmtMiB(sys.RSSEndImport), fmtMiB(sys.RSSEndIssue), fmtMiB(sys.PeakRSS), sys.Samples, fmtMiB(sys.HWM))
	if raw != nil {
		fmt.Fprintf(w, "- Raw driver: %s (%s rows/s): reading the CSV and hashing %s, driver %s. Rows: %s subjects, %s memberships, %s codes; database %s MiB.\n",
			fmtDur(raw.Total), fmtRate(Rate(raw.Rows, raw.Total)), fmtDur(raw.Prepare), fmtDur(raw.Write),
			groupThousands(raw.Subjects), groupThousands(raw.Memberships), groupThousands(raw.Codes), fmtMiB(rawSize))
		if o.engine == "sqlite" {
			fmt.Fprintf(w, "  enrollbench CPU %s (%s cores, SQLite included); writes to storage %s MiB.\n", fmtDur(raw.CPU), cores(raw.CPU, raw.Total), fmtMiB(raw.Written))
		} else {
			fmt.Fprintf(w, "  enrollbench CPU %s (%s cores)%s.\n", fmtDur(raw.CPU), cores(raw.CPU, raw.Total), engineNote)
		}
		fmt.Fprintf(w, "  Method: %s.\n", raw.Method)
		if raw.Subjects != sys.Subjects || raw.Memberships != sys.Memberships || raw.Codes != sys.Codes {
			fmt.Fprintf(w, "  WARNING: the raw run wrote different row counts from the system; the comparison is not like for like.\n")
		}
	}
	ext := fmt.Sprintf("- Extrapolated to %s rows from these rates (not measured): system %s", groupThousands(Target50M), fmtDur(Extrapolate(Target50M, sys.Combined())))
	if raw != nil {
		ext += ", raw " + fmtDur(Extrapolate(Target50M, Rate(raw.Rows, raw.Total)))
	}
	fmt.Fprintln(w, ext+".")
	fmt.Fprintf(w, "- enrollbench's own peak RSS: %s MiB.\n", fmtMiB(selfMaxRSS()))
	fmt.Fprintf(w, "- Command: %s\n", commandLine(o))
}

func writeSeriesReport(w io.Writer, m machine, o *issueOptions, in *input, res []*SystemResult) {
	var ns []string
	for _, r := range res {
		ns = append(ns, fmtRows(r.Rows))
	}
	writeMachine(w, m, o, fmt.Sprintf("%s, RSS series %s, seed %d", o.engine, strings.Join(ns, ", "), o.seed))
	fmt.Fprintln(w, "| engine | N | peak RSS MiB (VmHWM) | sampled peak MiB | RSS end import MiB | RSS end issue MiB | import rows/s | issue codes/s | combined rows/s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	var pts []Point
	for _, r := range res {
		peak := max(r.HWM, r.PeakRSS)
		pts = append(pts, Point{X: float64(r.Rows) / 1e6, Y: float64(peak) / MiB})
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", o.engine, fmtRows(r.Rows), fmtMiB(peak), fmtMiB(r.PeakRSS),
			fmtMiB(r.RSSEndImport), fmtMiB(r.RSSEndIssue), fmtRate(Rate(r.Rows, r.Import)), fmtRate(Rate(r.Codes, r.Issue)), fmtRate(r.Combined()))
	}
	first, last := pts[0], pts[len(pts)-1]
	fmt.Fprintf(w, "\nSlope of peak RSS vs N: %+.2f MiB per million rows (least squares over %d runs); %s to %s: %+.2f MiB per million rows.\n",
		Slope(pts), len(pts), fmtRows(res[0].Rows), fmtRows(res[len(res)-1].Rows), Slope([]Point{first, last}))
	fmt.Fprintf(w, "- Input: the first N rows of one %s-row file (%s MiB).\n", groupThousands(in.rows), fmtMiB(in.size))
	fmt.Fprintf(w, "- enrollbench's own peak RSS: %s MiB.\n", fmtMiB(selfMaxRSS()))
	fmt.Fprintf(w, "- Command: %s\n", commandLine(o))
}

// commandLine reconstructs the invocation (secrets never appear in it; a DSN's password is
// masked).
func commandLine(o *issueOptions) string {
	parts := []string{"go run ./cmd/enrollbench issue"}
	if o.series != nil {
		var ns []string
		for _, n := range o.series {
			ns = append(ns, fmt.Sprint(n))
		}
		parts = append(parts, "--rss-series "+strings.Join(ns, ","))
	} else {
		parts = append(parts, fmt.Sprintf("--rows %d", o.rows))
	}
	parts = append(parts, "--engine "+o.engine)
	if o.engine == "postgres" {
		parts = append(parts, "--postgres-dsn '"+maskPassword(o.pgDSN)+"'")
	}
	parts = append(parts, fmt.Sprintf("--seed %d", o.seed))
	if o.skipRaw && o.series == nil {
		parts = append(parts, "--skip-raw")
	}
	for _, kv := range o.serverEnv {
		parts = append(parts, "--server-env "+kv)
	}
	return "`" + strings.Join(parts, " ") + "`"
}

func maskPassword(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return dsn[:scheme+3] + user + ":***" + dsn[at:]
	}
	return dsn
}
