// Command leadflow-faults runs leadflow's reliability fault suite against
// real processes on loopback: it builds (or takes) the leadflow binary,
// starts nats-server and PostgreSQL as needed, runs leadflow processes,
// publishes requests, injects faults and checks that every request got
// exactly one outcome and every committed event was published once.
//
//	leadflow-faults [--scenario all|N|name,...] [--size N] [--short] [--out docs/reliability.md]
//
// It exits 1 when a scenario fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/leadflow/leadflow/internal/faults"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, code, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leadflow-faults:", err)
	}
	os.Exit(code)
}

// run runs the suite as the command line asks; it returns the rows and the
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) ([]faults.Row, int, error) {
	fs := flag.NewFlagSet("leadflow-faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o faults.Options
	var out, command string
	var list bool
	fs.StringVar(&o.Scenarios, "scenario", "all", "scenarios to run: all, or numbers or names, comma-separated")
	fs.IntVar(&o.Size, "size", 0, "requests per scenario that scales (default: each scenario's full size)")
	fs.BoolVar(&o.Short, "short", false, "a fifth of each scenario's full size (CI)")
	fs.StringVar(&out, "out", "", "rewrite the generated table of this Markdown file (e.g. docs/reliability.md)")
	fs.StringVar(&o.Bin, "bin", "", "leadflow binary (default: go build ./cmd/leadflow)")
	fs.StringVar(&o.Rev, "rev", "", "build leadflow from this git revision instead of the working tree")
	fs.StringVar(&o.NATSServer, "nats-server", "", "nats-server binary (default: /usr/sbin/nats-server, else the nats-server of go.mod, built)")
	fs.StringVar(&o.AdminURL, "database-url", envOr("LEADFLOW_TEST_DATABASE_URL", faults.DefaultAdminURL), "PostgreSQL server where scenarios get fresh databases")
	fs.StringVar(&o.Work, "work", "", "folder for logs and stores (default: a temporary folder, removed unless --keep)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the logs, stores and databases")
	fs.DurationVar(&o.Deadline, "deadline", 0, "longest wait for outcomes per scenario (default: 5m + 30ms per request)")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the random fault points (default: random, printed)")
	fs.StringVar(&command, "command", "", "the command line to print in the report (default: this one)")
	fs.BoolVar(&list, "list", false, "list the scenarios and exit")
	if err := fs.Parse(args); err != nil {
		return nil, 2, nil
	}
	if list {
		for _, sc := range faults.Scenarios() {
			size := "fixed"
			if sc.Full > 0 {
				size = fmt.Sprint(sc.Full)
			}
			pending := ""
			if sc.Pending != "" {
				pending = " (pending)"
			}
			fmt.Fprintf(stdout, "%2d %-18s %6s  %s%s\n", sc.ID, sc.Name, size, sc.Title, pending)
		}
		return nil, 0, nil
	}
	selected, err := faults.Select(o.Scenarios)
	if err != nil {
		return nil, 2, err
	}
	if o.ModuleDir, err = moduleDir(); err != nil {
		return nil, 2, err
	}
	if command == "" {
		command = "go run ./cmd/leadflow-faults " + strings.Join(args, " ")
	}
	o.Log = stderr
	start := time.Now()
	s, err := faults.New(ctx, o)
	if err != nil {
		return nil, 1, err
	}
	defer s.Close()
	fmt.Fprintf(stderr, "work folder %s, seed %d\n", s.Work(), s.Seed())
	rows := s.Run(ctx, selected)
	header := fmt.Sprintf("Produced by `%s` (seed %d) on %s in %s; %d CPUs, %s, %s, %s.",
		strings.TrimSpace(command), s.Seed(), start.UTC().Format("2006-01-02"), time.Since(start).Round(time.Second),
		runtime.NumCPU(), runtime.Version(), strings.Join(s.Notes(), ", "), postgresVersion(o.AdminURL))
	table := faults.Table(rows)
	fmt.Fprintln(stdout, header)
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, table)
	if out != "" {
		if err := faults.WriteReport(out, header, rows); err != nil {
			return rows, 1, err
		}
	}
	if ctx.Err() != nil {
		return rows, 1, ctx.Err()
	}
	for _, r := range rows {
		if r.Result == "FAIL" {
			return rows, 1, errors.New("some scenarios failed")
		}
	}
	return rows, 0, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// moduleDir finds the repository root: the folder holding go.mod above the
// working directory.
func moduleDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/leadflow/leadflow") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run leadflow-faults inside the leadflow repository (no go.mod found above the working directory)")
		}
		dir = parent
	}
}

func postgresVersion(url string) string {
	out, err := exec.Command("psql", url, "-XAtc", "SHOW server_version").Output()
	if err != nil {
		return "PostgreSQL"
	}
	return "PostgreSQL " + strings.Fields(strings.TrimSpace(string(out)))[0]
}
