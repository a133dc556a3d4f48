// Package devstack runs what leadflow needs on one machine, for trying it
// out: an embedded NATS server with JetStream and a throwaway PostgreSQL
// server started from the machine's own PostgreSQL binaries, both keeping
// their data in one folder that the next run reuses.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// DefaultNATSPort is the port NATS listens on when it is free.
const DefaultNATSPort = 4222

// Options configure a dev stack.
type Options struct {
	// Dir is the data folder: NATS stores in Dir/nats, PostgreSQL in Dir/pg
	// (its sockets in Dir/run, its log in Dir/postgresql.log). It is created
	// when missing and reused as it is otherwise. Required.
	Dir string
	// NATSPort is the first port tried for NATS on 127.0.0.1; when it is
	// taken, the next free port is used. 0 means DefaultNATSPort; -1, any
	// free port.
	NATSPort int
	// DatabaseURL, when set, is the database to use: no PostgreSQL server is
	// started.
	DatabaseURL string
	// Log receives a line for each step, and NATS's warnings and errors.
	Log zerolog.Logger
}

// Stack is a started dev stack. Stop it when done.
type Stack struct {
	dir     string
	log     zerolog.Logger
	lock    *os.File
	nats    *server.Server
	natsURL string
	pg      *postgres
	dbURL   string

	stopOnce sync.Once
	stopErr  error
}

// Start starts NATS with JetStream, then PostgreSQL (unless
// o.DatabaseURL is set) with a database named leadflow, and writes the URLs
// of both to EnvFile. Only one stack at a time may use a data folder.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	if o.Dir == "" {
		return nil, errors.New("devstack: no data folder")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	// 0755: when run as root, PostgreSQL runs as another user who must be
	// able to enter the folder.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the data folder: %w", err)
	}
	s := &Stack{dir: dir, log: o.Log}
	if s.lock, err = lock(filepath.Join(dir, "lock")); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.Stop(context.WithoutCancel(ctx))
		}
	}()
	_ = os.Remove(s.EnvFile())

	// What PostgreSQL needs is checked before anything starts.
	var pg *postgres
	if o.DatabaseURL == "" {
		if pg, err = newPostgres(dir, s.log); err != nil {
			return nil, err
		}
	}
	if err := s.startNATS(o.NATSPort); err != nil {
		return nil, err
	}
	if pg == nil {
		s.dbURL = o.DatabaseURL
		s.log.Info().Msg("using the database of LEADFLOW_DATABASE_URL")
	} else {
		s.pg = pg
		if s.dbURL, err = pg.start(ctx); err != nil {
			return nil, err
		}
	}
	env := fmt.Sprintf("export LEADFLOW_NATS_URL=%s\nexport LEADFLOW_DATABASE_URL=%s\n",
		ShellQuote(s.natsURL), ShellQuote(s.dbURL))
	if err := os.WriteFile(s.EnvFile(), []byte(env), 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

// NATSURL is the URL of the NATS server.
func (s *Stack) NATSURL() string { return s.natsURL }

// DatabaseURL is the URL of the leadflow database.
func (s *Stack) DatabaseURL() string { return s.dbURL }

// Dir is the absolute path of the data folder.
func (s *Stack) Dir() string { return s.dir }

// EnvFile is a shell file in the data folder that exports LEADFLOW_NATS_URL
// and LEADFLOW_DATABASE_URL while the stack runs (`. .leadflow-dev/env`).
func (s *Stack) EnvFile() string { return filepath.Join(s.dir, "env") }

// Stop stops PostgreSQL (a fast shutdown: sessions are ended, nothing
// committed is lost), then NATS, and frees the data folder. It is safe to call
// more than once.
func (s *Stack) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		var errs []error
		if err := os.Remove(s.EnvFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if s.pg != nil {
			errs = append(errs, s.pg.stop(ctx))
		}
		if s.nats != nil {
			s.nats.Shutdown()
			s.nats.WaitForShutdown()
			s.log.Info().Msg("NATS stopped")
		}
		if s.lock != nil {
			errs = append(errs, s.lock.Close())
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

func lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock the data folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another leadflow dev; stop it or choose another --data folder", filepath.Dir(path))
		}
		return nil, fmt.Errorf("lock the data folder: %w", err)
	}
	return f, nil
}

func (s *Stack) startNATS(first int) error {
	port, err := natsPort(first)
	if err != nil {
		return err
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "leadflow-dev",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(s.dir, "nats"),
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return fmt.Errorf("NATS: %w", err)
	}
	srv.SetLogger(natsLogger{s.log.With().Str("component", "nats").Logger()}, false, false)
	go srv.Start()
	s.nats = srv
	if !srv.ReadyForConnections(15 * time.Second) {
		return fmt.Errorf("NATS did not start listening on 127.0.0.1:%d", port)
	}
	if !srv.JetStreamEnabled() {
		return errors.New("NATS started without JetStream")
	}
	s.natsURL = srv.ClientURL()
	s.log.Info().Str("url", s.natsURL).Str("store", filepath.Join(s.dir, "nats")).Msg("NATS with JetStream started")
	return nil
}

// natsPort is first when it is free, else the next free port after it.
func natsPort(first int) (int, error) {
	switch {
	case first == -1:
		return server.RANDOM_PORT, nil
	case first == 0:
		first = DefaultNATSPort
	}
	for p := first; p < first+100 && p < 65536; p++ {
		if free(p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port for NATS on 127.0.0.1 from %d to %d", first, first+99)
}

func free(port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// natsLogger passes the embedded server's notices, warnings and errors to
// zerolog; a fatal error is logged, never exits the process.
type natsLogger struct{ log zerolog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// ShellQuote quotes s for a POSIX shell when it needs quoting.
func ShellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
