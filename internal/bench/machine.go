package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // for sqlite_version(): the library the server links too
)

// machine describes where the benchmark ran.
type machine struct {
	date     time.Time
	cpus     int
	cpuModel string
	memTotal string
	kernel   string
	goVer    string
	engine   string
	diskFree string
}

func describeMachine(ctx context.Context, o *issueOptions, work string) machine {
	m := machine{date: time.Now(), cpus: runtime.NumCPU(), goVer: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				if n, err := parseKB([]byte(strings.TrimPrefix(l, "MemTotal:"))); err == nil {
					m.memTotal = fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.diskFree = diskFree(work)
	switch o.engine {
	case "sqlite":
		m.engine = sqliteVersion()
	case "postgres":
		v, err := pgVersion(ctx, o.pgDSN)
		if err != nil {
			v = "PostgreSQL (version unknown: " + err.Error() + ")"
		}
		m.engine = v
	}
	return m
}

func sqliteVersion() string {
	db, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		return "SQLite (unknown)"
	}
	defer db.Close()
	var v string
	if err := db.QueryRow("SELECT sqlite_version()").Scan(&v); err != nil {
		return "SQLite (unknown)"
	}
	return "SQLite " + v + " (mattn/go-sqlite3, cgo)"
}
