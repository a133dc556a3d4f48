// Command leadflow converts CRM leads into accounts, contacts and
// opportunities, driven by NATS JetStream and backed by PostgreSQL.
//
//	leadflow serve                               run the workers, the outbox relay and /healthz, /readyz, /metrics
//	leadflow migrate                             apply the database migrations
//	leadflow settings get --org ID               print an org's settings
//	leadflow settings put --org ID --file F.json replace an org's settings
//	leadflow dev                                 all of it on one machine: embedded NATS, throwaway PostgreSQL
//	leadflow import FILE                         stream a CSV or JSONL file of leads through the queue
//	leadflow events                              follow the events stream
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"syscall"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/service"
	"github.com/leadflow/leadflow/internal/settings"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/rs/zerolog"
)

const usage = `usage: leadflow <command>

commands:
  serve                                 run the workers, the outbox relay and the HTTP endpoints
  migrate                               apply the database migrations
  settings get --org ID                 print an org's settings
  settings put --org ID --file F.json   replace an org's settings (validated first)

`

func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", extra[n].usage)
	}
	fmt.Fprint(w, "\nconfiguration: LEADFLOW_* environment variables (see README.md)\n")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "leadflow:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		printUsage(os.Stderr)
		return errors.New("no command")
	}
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(cfg.LogLevel)
	switch args[0] {
	case "serve":
		tuneGC(os.Getenv)
		svc, err := service.Start(ctx, cfg, log)
		if err != nil {
			return err
		}
		return svc.Run(ctx)
	case "migrate":
		return withStore(ctx, cfg, func(st *store.Store) error {
			if err := st.Migrate(ctx); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "migrations applied")
			return nil
		})
	case "settings":
		return withStore(ctx, cfg, func(st *store.Store) error { return settings.Command(ctx, st, args[1:], stdout) })
	default:
		if c, ok := extra[args[0]]; ok {
			return c.run(ctx, cfg, log, args[1:], stdout)
		}
	case "help", "-h", "--help":
		printUsage(stdout)
		return nil
	}
	printUsage(os.Stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

// command is a subcommand that lives in a file of its own and registers
// itself in extra from that file's init.
type command struct {
	usage string
	run   func(ctx context.Context, cfg config.Config, log zerolog.Logger, args []string, stdout io.Writer) error
}

var extra = map[string]command{}

// withStore runs f on a store of two connections. It sets no time limit
// (an interrupt ends it): migrations, and a settings put whose rules need
// indexes, build indexes, which takes as long as the tables are large.
func withStore(ctx context.Context, cfg config.Config, f func(*store.Store) error) error {
	st, err := store.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(st)
}

// The collector's settings for serve, unless GOGC or GOMEMLIMIT set them.
// What a request allocates is garbage once it is settled (some 190 KB of
// it), and what stays live is small: 3 MiB at 1,000 requests/s, a few tens
// of MiB in a flood. With Go's default GOGC=100 the collector ran often
// enough to take a fifth of serve's CPU; with GOGC=400 it still ran twelve
// times a second at 1,000 requests/s. Under serve's own soft limit, which
// keeps the whole process under 100 MB with a stream's worth of requests
// waiting, the heap may grow to 21 times what is live (ownGCPercent): the
// limit, not the ratio, then says when to collect, a few times a second at
// that rate. Under a limit the environment sets (a container's, usually
// far larger), the heap grows to five times what is live (gcPercent), so
// that it does not take the whole of the limit for a few MiB of live data
// (docs/performance.md).
const (
	gcPercent    = 400
	ownGCPercent = 2000
	memoryLimit  = 72 << 20
)

// tuneGC applies memoryLimit where getenv has no GOMEMLIMIT, and where it has
// no GOGC, ownGCPercent under that limit or gcPercent under the
// environment's.
func tuneGC(getenv func(string) string) {
	own := getenv("GOMEMLIMIT") == ""
	if own {
		debug.SetMemoryLimit(memoryLimit)
	}
	if getenv("GOGC") == "" {
		if own {
			debug.SetGCPercent(ownGCPercent)
		} else {
			debug.SetGCPercent(gcPercent)
		}
	}
}

func newLogger(level string) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	l, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		l = zerolog.InfoLevel
	}
	return zerolog.New(os.Stderr).Level(l).With().Timestamp().Str("service", "leadflow").Logger()
}
