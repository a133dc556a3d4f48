package faults

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// netProxy is a TCP proxy in the style of toxiproxy, in front of one
// server: it can add latency, stop forwarding while keeping connections
// open (a partition), and reset every connection.
type netProxy struct {
	ln      net.Listener
	target  string
	latency atomic.Int64 // per chunk and direction, nanoseconds
	mu      sync.Mutex
	holes   bool
	healed  *sync.Cond
	conns   map[net.Conn]struct{}
}

func startProxy(target string) (*netProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &netProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.healed = sync.NewCond(&p.mu)
	go p.serve()
	return p, nil
}

// Addr is the address clients connect to.
func (p *netProxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk forwarded, in each direction, by d.
func (p *netProxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Blackhole stops (true) or resumes (false) forwarding; connections stay
// open and what is sent meanwhile waits in the kernel's buffers.
func (p *netProxy) Blackhole(on bool) {
	p.mu.Lock()
	p.holes = on
	p.mu.Unlock()
	if !on {
		p.healed.Broadcast()
	}
}

// Reset closes every connection with a TCP RST.
func (p *netProxy) Reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
		n++
	}
	clear(p.conns)
	return n / 2
}

// Close stops the proxy.
func (p *netProxy) Close() {
	p.ln.Close()
	p.Blackhole(false)
	p.Reset()
}

func (p *netProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			p.wait()
			out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				in.Close()
				return
			}
			p.mu.Lock()
			p.conns[in], p.conns[out] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go p.pipe(out, in)
			p.pipe(in, out)
		}()
	}
}

// wait blocks while the proxy is a black hole.
func (p *netProxy) wait() {
	p.mu.Lock()
	for p.holes {
		p.healed.Wait()
	}
	p.mu.Unlock()
}

func (p *netProxy) pipe(dst, src net.Conn) {
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.wait()
			if d := time.Duration(p.latency.Load()); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
