package importer

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type phase int32

const (
	phaseValidating phase = iota
	phasePublishing
	phaseWaiting
	phaseLookingUp
)

// progress shows how an import is going: on a terminal a bar redrawn in
// place, otherwise a line every few seconds. Reports of invalid rows go
// through it too, so that they do not garble the bar.
type progress struct {
	w        io.Writer
	terminal bool
	every    time.Duration

	phase     atomic.Int32
	validated atomic.Int64
	published atomic.Int64
	// total is the number of rows to publish; start is when publishing began.
	total atomic.Int64
	start atomic.Int64
	// outcomes returns the rows with an outcome so far, qualified and rejected.
	outcomes func() (qualified, rejected int)

	mu    sync.Mutex
	drawn bool
}

func newProgress(o *Options) *progress {
	return &progress{w: o.Progress, terminal: o.Terminal, every: o.ProgressEvery,
		outcomes: func() (int, int) { return 0, 0 }}
}

func (p *progress) setPhase(ph phase) {
	if ph == phasePublishing {
		p.start.Store(time.Now().UnixNano())
	}
	p.phase.Store(int32(ph))
}

// report prints one line above the bar.
func (p *progress) report(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
	fmt.Fprintln(p.w, line)
}

// run draws until ctx is done, then draws a last time.
func (p *progress) run(ctx context.Context) {
	every := p.every
	if p.terminal {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.draw(true)
			return
		case <-t.C:
			p.draw(false)
		}
	}
}

func (p *progress) draw(last bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := p.status()
	if p.terminal {
		fmt.Fprint(p.w, "\r"+line+"\x1b[K")
		p.drawn = true
		if last {
			fmt.Fprintln(p.w)
			p.drawn = false
		}
		return
	}
	if !last {
		fmt.Fprintln(p.w, "import: "+line)
	}
}

func (p *progress) status() string {
	if phase(p.phase.Load()) == phaseValidating {
		return fmt.Sprintf("validating: %d rows read", p.validated.Load())
	}
	q, r := p.outcomes()
	done := int64(q + r)
	total := p.total.Load()
	elapsed := time.Since(time.Unix(0, p.start.Load())).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed
	}
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	var b strings.Builder
	if p.terminal {
		const width = 24
		fill := int(pct / 100 * width)
		b.WriteString("[" + strings.Repeat("#", fill) + strings.Repeat(".", width-fill) + "] ")
	}
	fmt.Fprintf(&b, "%d/%d rows done (%.0f%%), %d published, %.0f rows/s, qualified %d, rejected %d, ETA %s",
		done, total, pct, p.published.Load(), rate, q, r, eta)
	if phase(p.phase.Load()) == phaseLookingUp {
		b.WriteString(", looking up earlier outcomes")
	}
	return b.String()
}
