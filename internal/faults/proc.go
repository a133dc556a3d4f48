// Package faults runs leadflow's reliability fault suite: it starts real
// leadflow processes, nats-server and PostgreSQL on loopback, publishes
// requests, injects faults (kill -9, broker and database restarts, slow and
// poisoned requests, hostile input) and checks the delivery invariants
// afterwards, one table row per scenario.
package faults

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process whose stdout and stderr are appended to a log
// file; it can be killed and started again with the same command.
type Proc struct {
	Name    string
	Path    string
	Args    []string
	Env     []string
	LogPath string
	// Cred, when set, runs the process as another OS user.
	Cred *syscall.Credential
	// Dir is the working directory.
	Dir string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	// hwm is the largest VmHWM (kB) read from /proc while the process ran,
	// kept across restarts.
	hwm int64
}

// Start starts the process; its output is appended to LogPath.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exited() {
		return fmt.Errorf("%s is already running", p.Name)
	}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that a signal to the suite does not reach
	// it first; Pdeathsig takes it down if the suite itself dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: p.Cred}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *Proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.exited()
}

// Pid is the process id, 0 when not started.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// ExitErr is how the last run ended (nil while running or after exit 0).
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Signal sends sig to the process (not to its group).
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exited() {
		return errors.New(p.Name + " is not running")
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits up to d for the process to exit and reports whether it did.
func (p *Proc) Wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	p.SampleRSS()
	if p.Signal(syscall.SIGKILL) == nil {
		p.Wait(10 * time.Second)
	}
}

// Stop sends SIGTERM, waits up to grace, then kills.
func (p *Proc) Stop(grace time.Duration) {
	p.SampleRSS()
	if p.Signal(syscall.SIGTERM) != nil {
		return
	}
	if !p.Wait(grace) {
		p.Kill()
	}
}

// SampleRSS reads the process's peak resident set (VmHWM) and remembers the
// largest value seen.
func (p *Proc) SampleRSS() {
	pid := p.Pid()
	if pid == 0 || !p.Running() {
		return
	}
	if kb := vmHWM(pid); kb > 0 {
		p.mu.Lock()
		p.hwm = max(p.hwm, kb)
		p.mu.Unlock()
	}
}

// PeakRSS is the largest VmHWM in kB sampled over every run of the process.
func (p *Proc) PeakRSS() int64 {
	p.SampleRSS()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hwm
}

func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts connections.
func waitTCP(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections within %s: %w", addr, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
