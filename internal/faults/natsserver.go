package faults

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// NATSNode is one nats-server child process with JetStream, alone or in a
// cluster. Restarting it keeps its ports and its store.
type NATSNode struct {
	Proc        *Proc
	Port        int
	MonitorPort int
	ClusterPort int
	StoreDir    string
}

// URL is the node's client URL.
func (n *NATSNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// startNATS starts one node; routes (cluster ports of every member) make it a
// cluster member.
func startNATS(bin, dir, name string, port, clusterPort int, routes []int) (*NATSNode, error) {
	var err error
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	mon, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &NATSNode{Port: port, MonitorPort: mon, ClusterPort: clusterPort, StoreDir: filepath.Join(dir, name+"-store")}
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mon), "-js", "-sd", n.StoreDir, "-n", name}
	if clusterPort != 0 {
		var urls []string
		for _, r := range routes {
			urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", r))
		}
		args = append(args, "--cluster_name", "leadflow-faults", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", clusterPort),
			"--routes", strings.Join(urls, ","))
	}
	n.Proc = &Proc{Name: name, Path: bin, Args: args, Env: os.Environ(), LogPath: filepath.Join(dir, name+".log")}
	if err := n.Proc.Start(); err != nil {
		return nil, err
	}
	return n, n.waitHealthy(60 * time.Second)
}

// waitHealthy waits until the node's /healthz says JetStream is ready.
func (n *NATSNode) waitHealthy(d time.Duration) error {
	if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", n.Port), d); err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.MonitorPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server %s not healthy within %s", n.Proc.Name, d)
		}
		if !n.Proc.Running() {
			return fmt.Errorf("nats-server %s exited: %v (see %s)", n.Proc.Name, n.Proc.ExitErr(), n.Proc.LogPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart stops the node (SIGKILL when kill, else SIGTERM), waits down, and
// starts it again on the same ports and store.
func (n *NATSNode) Restart(kill bool, down time.Duration) error {
	if err := n.Down(kill); err != nil {
		return err
	}
	time.Sleep(down)
	return n.Up()
}

// Down stops the node.
func (n *NATSNode) Down(kill bool) error {
	if kill {
		n.Proc.Kill()
	} else {
		n.Proc.Stop(30 * time.Second)
	}
	return nil
}

// Up starts a stopped node and waits until it is healthy.
func (n *NATSNode) Up() error {
	if err := n.Proc.Start(); err != nil {
		return err
	}
	return n.waitHealthy(60 * time.Second)
}

// Stop ends the node for good.
func (n *NATSNode) Stop() { n.Proc.Stop(10 * time.Second) }

var natsVersion = regexp.MustCompile(`v(\d+)\.(\d+)\.(\d+)`)

// natsServerVersion reports bin's version and whether it is 2.10 or later.
func natsServerVersion(bin string) (string, bool) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "", false
	}
	m := natsVersion.FindStringSubmatch(string(out))
	if m == nil {
		return strings.TrimSpace(string(out)), false
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return m[0], major > 2 || (major == 2 && minor >= 10)
}
