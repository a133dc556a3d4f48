package faults

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Leadflow is one `leadflow serve` child process.
type Leadflow struct {
	Name     string
	HTTPAddr string
	Proc     *Proc
	// Restarts counts how often it was started again after being stopped.
	Restarts int
}

// newLeadflow prepares (does not start) a leadflow process named name with
// env (LEADFLOW_* variables) on top of the suite's environment. Its database
// connections carry application_name=name, so that pg_stat_activity tells
// the processes apart.
func newLeadflow(bin, dir, name string, env map[string]string) (*Leadflow, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	l := &Leadflow{Name: name, HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port)}
	vars := map[string]string{}
	for k, v := range env {
		vars[k] = v
	}
	vars["LEADFLOW_HTTP_ADDR"] = l.HTTPAddr
	if u := vars["LEADFLOW_DATABASE_URL"]; u != "" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		vars["LEADFLOW_DATABASE_URL"] = u + sep + "application_name=" + name
	}
	var list []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEADFLOW_") {
			list = append(list, kv)
		}
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		list = append(list, k+"="+vars[k])
	}
	l.Proc = &Proc{Name: name, Path: bin, Args: []string{"serve"}, Env: list, LogPath: filepath.Join(dir, name+".log")}
	return l, nil
}

// Start starts the process and waits until /readyz answers 200.
func (l *Leadflow) Start() error {
	if err := l.Proc.Start(); err != nil {
		return err
	}
	return l.waitReady(90 * time.Second)
}

func (l *Leadflow) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: 3 * time.Second}
	for {
		resp, err := c.Get("http://" + l.HTTPAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !l.Proc.Running() {
			return fmt.Errorf("leadflow %s exited during start-up: %v (see %s)", l.Name, l.Proc.ExitErr(), l.Proc.LogPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leadflow %s not ready within %s (see %s)", l.Name, d, l.Proc.LogPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill9 kills the process with SIGKILL.
func (l *Leadflow) Kill9() { l.Proc.Kill() }

// Restart starts a stopped or killed process again.
func (l *Leadflow) Restart() error {
	l.Restarts++
	return l.Start()
}
