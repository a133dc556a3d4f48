package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

// ErrNoPostgres means that the PostgreSQL server binaries were not found.
var ErrNoPostgres = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, in /usr/lib/postgresql/*/bin or in /usr/local/bin: " +
	"install the Debian package postgresql (apt-get install postgresql), or set LEADFLOW_DATABASE_URL to a database of your own")

// binDirs are searched for initdb and pg_ctl after PATH, newest version first.
var binDirs = []string{"/usr/lib/postgresql/*/bin", "/usr/local/bin"}

// Database is the name of the database the dev stack creates.
const Database = "leadflow"

// initialized marks a cluster that initdb finished.
const initialized = "leadflow-initialized"

// postgres is a PostgreSQL server of the dev stack, with its cluster in
// dir/pg.
type postgres struct {
	log     zerolog.Logger
	dir     string // the data folder
	bin     string // holds initdb and pg_ctl
	data    string // the cluster
	sock    string // unix socket folder
	logFile string
	port    int
	// owner is who PostgreSQL runs as when leadflow runs as root (it refuses
	// to run as root); nil otherwise.
	owner *syscall.Credential
}

func newPostgres(dir string, log zerolog.Logger) (*postgres, error) {
	bin, err := findBinaries(os.Getenv("PATH"), binDirs)
	if err != nil {
		return nil, err
	}
	p := &postgres{
		log: log.With().Str("component", "postgres").Logger(), dir: dir, bin: bin,
		data: filepath.Join(dir, "pg"), sock: filepath.Join(dir, "run"), logFile: filepath.Join(dir, "postgresql.log"),
	}
	if os.Geteuid() == 0 {
		if p.owner, err = unprivileged(dir); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// findBinaries is the first folder holding both initdb and pg_ctl: on path,
// then in the folders globs match, newest PostgreSQL version first.
func findBinaries(path string, globs []string) (string, error) {
	dirs := filepath.SplitList(path)
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		// /usr/lib/postgresql/<version>/bin: the highest version first.
		sort.SliceStable(m, func(i, j int) bool { return version(m[i]) > version(m[j]) })
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
		if d != "" && executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func version(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// unprivileged is the postgres OS user, who runs PostgreSQL when leadflow
// runs as root; it must be able to reach dir.
func unprivileged(dir string) (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no OS user postgres to run it as "+
			"(the Debian package postgresql creates one): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("OS user postgres: %w", err)
	}
	groups := []uint32{uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				groups = append(groups, uint32(g))
			}
		}
	}
	if err := canEnter(dir, uint32(uid), groups); err != nil {
		return nil, fmt.Errorf("PostgreSQL runs as OS user postgres (leadflow runs as root), who cannot reach the data folder: %w; "+
			"choose a --data folder it can reach (e.g. under /var/tmp), or set LEADFLOW_DATABASE_URL to a database of your own", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// canEnter reports the first folder from dir up to / that the user uid, a
// member of groups, may not enter.
func canEnter(dir string, uid uint32, groups []uint32) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		var bit fs.FileMode
		switch {
		case st.Uid == uid:
			bit = 0o100
		case slices.Contains(groups, st.Gid):
			bit = 0o010
		default:
			bit = 0o001
		}
		if fi.Mode().Perm()&bit == 0 {
			return fmt.Errorf("%s has mode %04o and owner uid %d", p, fi.Mode().Perm(), st.Uid)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// start initializes the cluster on the first run, starts the server on a free
// port and creates the database; it returns the database URL.
func (p *postgres) start(ctx context.Context) (string, error) {
	if err := p.prepare(ctx); err != nil {
		return "", err
	}
	var err error
	// The free port found may be taken again before the server binds it.
	for attempt := 0; attempt < 3; attempt++ {
		if p.port, err = freePort(); err != nil {
			return "", err
		}
		if err = p.pgctl(ctx, "start", "-w", "-t", "60", "-l", p.logFile, "-o", p.serverOptions()); err == nil {
			break
		}
		if !strings.Contains(p.logTail(), "could not bind") {
			return "", fmt.Errorf("start PostgreSQL: %w\n%s", err, p.logTail())
		}
	}
	if err != nil {
		return "", fmt.Errorf("start PostgreSQL: %w\n%s", err, p.logTail())
	}
	p.log.Info().Int("port", p.port).Str("data", p.data).Str("log", p.logFile).Msg("PostgreSQL started")
	if err := p.createDatabase(ctx); err != nil {
		return "", err
	}
	return p.url(Database), nil
}

// prepare runs initdb when the cluster does not exist yet, stops a server
// that a killed dev stack left running, and hands the folders PostgreSQL
// writes to its owner.
func (p *postgres) prepare(ctx context.Context) error {
	if err := os.MkdirAll(p.sock, 0o700); err != nil {
		return err
	}
	// Each run's log starts empty, so that an error shows this run's lines.
	if err := os.WriteFile(p.logFile, nil, 0o600); err != nil {
		return err
	}
	done := filepath.Join(p.data, initialized)
	_, err := os.Stat(done)
	fresh := errors.Is(err, os.ErrNotExist)
	if fresh {
		// Whatever is there is what an interrupted initdb left.
		if err := os.RemoveAll(p.data); err != nil {
			return err
		}
		if err := os.Mkdir(p.data, 0o700); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := p.chown(); err != nil {
		return err
	}
	if fresh {
		p.log.Info().Str("data", p.data).Msg("initializing a PostgreSQL cluster")
		if err := p.exec(ctx, "initdb", "-D", p.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"); err != nil {
			return err
		}
		return os.WriteFile(done, nil, 0o644)
	}
	// pg_ctl status: 0 running, 3 not running.
	if err := p.pgctl(ctx, "status"); err == nil {
		p.log.Warn().Str("data", p.data).Msg("stopping the PostgreSQL server that an earlier run left behind")
		if err := p.pgctl(ctx, "stop", "-m", "fast", "-w", "-t", "60"); err != nil {
			return fmt.Errorf("stop the PostgreSQL server left running on %s: %w", p.data, err)
		}
	}
	return nil
}

// chown gives the cluster, the socket folder and the log to the user
// PostgreSQL runs as.
func (p *postgres) chown() error {
	if p.owner == nil {
		return nil
	}
	uid, gid := int(p.owner.Uid), int(p.owner.Gid)
	for _, root := range []string{p.data, p.sock, p.logFile} {
		err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			return fmt.Errorf("hand %s to OS user postgres: %w", root, err)
		}
	}
	return nil
}

func (p *postgres) serverOptions() string {
	sock := p.sock
	// A unix socket path is limited to 107 bytes; TCP alone is enough.
	if len(sock)+len("/.s.PGSQL.65535") > 107 {
		sock = ""
	}
	// pg_ctl hands these to the server through the shell.
	return fmt.Sprintf("-p %d -h 127.0.0.1 -k %s", p.port, shellQuoteAlways(sock))
}

func (p *postgres) url(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

func (p *postgres) createDatabase(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.url("postgres"))
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, Database).Scan(&exists); err != nil {
		return fmt.Errorf("look for database %s: %w", Database, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{Database}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", Database, err)
	}
	p.log.Info().Str("database", Database).Msg("database created")
	return nil
}

func (p *postgres) stop(ctx context.Context) error {
	if p.port == 0 {
		return nil
	}
	if err := p.pgctl(ctx, "stop", "-m", "fast", "-w", "-t", "60"); err != nil {
		return fmt.Errorf("stop PostgreSQL: %w", err)
	}
	p.port = 0
	p.log.Info().Msg("PostgreSQL stopped")
	return nil
}

func (p *postgres) pgctl(ctx context.Context, action string, args ...string) error {
	return p.exec(ctx, "pg_ctl", append([]string{action, "-D", p.data, "-s"}, args...)...)
}

// exec runs one of the PostgreSQL binaries, as the postgres OS user when
// leadflow runs as root.
func (p *postgres) exec(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, name), args...)
	// Interrupted, initdb removes what it wrote and pg_ctl stops waiting.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	// The postgres user may not be able to enter the current folder.
	cmd.Dir = p.dir
	// Its own process group: a Ctrl-C in the terminal is leadflow's to handle.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.owner}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (p *postgres) logTail() string {
	b, _ := os.ReadFile(p.logFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for PostgreSQL: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func shellQuoteAlways(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
