package faults

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// withDB returns raw with its database replaced by name and extra query
// parameters set.
func withDB(raw, name string, params map[string]string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// createDatabase creates a fresh database on the server at adminURL and
// returns its URL and a function that drops it.
func createDatabase(ctx context.Context, adminURL, prefix string) (string, func(), error) {
	name := prefix + "_" + randomHex(4)
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("connect to PostgreSQL at %s: %w", adminURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	}
	return withDB(adminURL, name, nil), drop, nil
}

// PrivatePG is a PostgreSQL cluster of the suite's own, in a temporary
// folder on a free port, that a scenario may crash.
type PrivatePG struct {
	Dir     string
	Port    int
	LogPath string
	bin     string
	cred    *syscall.Credential
	opts    []string
}

// pgBinDir finds the folder holding pg_ctl and initdb.
func pgBinDir() (string, error) {
	cands, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	cands = append(cands, "/usr/local/bin", "/usr/bin")
	for _, d := range cands {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				return d, nil
			}
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("pg_ctl and initdb not found (looked in /usr/lib/postgresql/*/bin, /usr/local/bin, PATH)")
}

// startPrivatePG initdb's a cluster under dir and starts it. PostgreSQL
// refuses to run as root, so as root the cluster belongs to the postgres OS
// user. opts are extra server settings ("name=value").
func startPrivatePG(dir string, opts ...string) (*PrivatePG, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	pg := &PrivatePG{Dir: dir, Port: port, LogPath: filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".log"), bin: bin, opts: opts}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres OS user for a private cluster: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, p := range []string{dir, pg.LogPath} {
			if p == pg.LogPath {
				f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
				if err != nil {
					return nil, err
				}
				f.Close()
			}
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := pg.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return pg, pg.Start()
}

func (pg *PrivatePG) run(tool string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(pg.bin, tool), args...)
	cmd.Dir = pg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Start starts the server (pg_ctl start -w).
func (pg *PrivatePG) Start() error {
	o := []string{"-p", strconv.Itoa(pg.Port), "-k", pg.Dir, "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"}
	for _, s := range pg.opts {
		o = append(o, "-c", s)
	}
	out, err := pg.run("pg_ctl", "-D", filepath.Join(pg.Dir, "data"), "-l", pg.LogPath, "-w", "-t", "120", "-o", strings.Join(o, " "), "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s", err, out)
	}
	return nil
}

// Stop stops the server with pg_ctl's mode: "immediate" is a crash (no
// checkpoint; recovery replays the WAL at the next start).
func (pg *PrivatePG) Stop(mode string) error {
	out, err := pg.run("pg_ctl", "-D", filepath.Join(pg.Dir, "data"), "-m", mode, "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %w\n%s", mode, err, out)
	}
	return nil
}

// AdminURL is the URL of the cluster's postgres database.
func (pg *PrivatePG) AdminURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.Port)
}
