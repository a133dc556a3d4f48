package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/devstack"
	"github.com/leadflow/leadflow/internal/service"
	"github.com/rs/zerolog"
)

func init() {
	extra["dev"] = command{
		usage: "dev [--data DIR]                      run leadflow with an embedded NATS server and a throwaway PostgreSQL",
		run:   runDev,
	}
}

// runDev runs leadflow on a dev stack until ctx is done, then stops the
// service, PostgreSQL and NATS, in that order.
func runDev(ctx context.Context, cfg config.Config, log zerolog.Logger, args []string, stdout io.Writer) (err error) {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	dir := fs.String("data", ".leadflow-dev", "folder of NATS's and PostgreSQL's data; the next run reuses it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dev: unexpected argument %q", fs.Arg(0))
	}
	opts := devstack.Options{Dir: *dir, Log: log}
	// config has a default database URL; only one the user set counts here.
	if _, ok := os.LookupEnv("LEADFLOW_DATABASE_URL"); ok {
		opts.DatabaseURL = cfg.DatabaseURL
	}
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		err = errors.Join(err, st.Stop(sctx))
	}()

	cfg.NATSURL, cfg.DatabaseURL = st.NATSURL(), st.DatabaseURL()
	svc, err := service.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	exe := os.Args[0]
	if strings.Contains(exe, "go-build") {
		exe = "go run ./cmd/leadflow"
	}
	env := fmt.Sprintf("LEADFLOW_NATS_URL=%s LEADFLOW_DATABASE_URL=%s",
		devstack.ShellQuote(st.NATSURL()), devstack.ShellQuote(st.DatabaseURL()))
	fmt.Fprintf(stdout, "leadflow dev is running; Ctrl-C stops it. Data in %s\n"+
		"  NATS:      %s\n  database:  %s\n  HTTP:      http://%s/readyz\nTry it from another terminal:\n",
		st.Dir(), st.NATSURL(), st.DatabaseURL(), svc.Addr())
	if _, ok := extra["import"]; ok {
		fmt.Fprintf(stdout, "  %s %s import --org demo --actor demo examples/leads.csv\n", env, exe)
	}
	fmt.Fprintf(stdout, "  %s %s events --format text\n", env, exe)
	return svc.Run(ctx)
}
