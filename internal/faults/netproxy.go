package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// netProxy is an in-process toxiproxy proxy in front of one server, whose
// toxics the scenario adds and removes.
type netProxy struct {
	p *toxiproxy.Proxy
}

// toxiServer holds the proxies; nothing listens for toxiproxy's HTTP API.
var toxiServer = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())

func startProxy(name, upstream string) (*netProxy, error) {
	p := toxiproxy.NewProxy(toxiServer, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("toxiproxy %s: %w", name, err)
	}
	return &netProxy{p: p}, nil
}

// Addr is the address clients connect to.
func (n *netProxy) Addr() string { return n.p.Listen }

// toxic adds a toxic of type typ with attrs to both directions for d, then
// removes it.
func (n *netProxy) toxic(typ string, attrs map[string]any, d time.Duration) error {
	var names []string
	for _, stream := range []string{"upstream", "downstream"} {
		name := typ + "_" + stream
		raw, err := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "attributes": attrs})
		if err != nil {
			return err
		}
		if _, err := n.p.Toxics.AddToxicJson(bytes.NewReader(raw)); err != nil {
			return fmt.Errorf("toxiproxy %s: add %s: %w", n.p.Name, name, err)
		}
		names = append(names, name)
	}
	time.Sleep(d)
	for _, name := range names {
		if err := n.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
			return fmt.Errorf("toxiproxy %s: remove %s: %w", n.p.Name, name, err)
		}
	}
	return nil
}

// Latency delays what flows each way by d, for span.
func (n *netProxy) Latency(d, span time.Duration) error {
	return n.toxic("latency", map[string]any{"latency": d.Milliseconds()}, span)
}

// Reset resets (TCP RST) every connection that carries data within span,
// those opened meanwhile included.
func (n *netProxy) Reset(span time.Duration) error {
	return n.toxic("reset_peer", map[string]any{"timeout": 0}, span)
}

// Partition drops what flows either way for span, connections left open.
func (n *netProxy) Partition(span time.Duration) error {
	return n.toxic("timeout", map[string]any{"timeout": 0}, span)
}

// Close stops the proxy and closes its connections.
func (n *netProxy) Close() { n.p.Stop() }
