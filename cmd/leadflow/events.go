package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

func init() {
	extra["events"] = command{
		usage: "events [--from-start] [--org ID] [--lead ID] [--type T,...] [--format json|text]\n" +
			"                                        follow the events stream, one event a line",
		run: followEvents,
	}
}

// eventFilter selects the events to print; an empty field selects all.
type eventFilter struct {
	org, lead string
	text      bool
}

// typeList is a repeatable flag of comma-separated event types.
type typeList []string

func (l *typeList) String() string { return strings.Join(*l, ",") }

func (l *typeList) Set(v string) error {
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if !slices.Contains(stream.EventSubjects, t) {
			return fmt.Errorf("unknown event type %q; known: %s", t, strings.Join(stream.EventSubjects, ", "))
		}
		if !slices.Contains(*l, t) {
			*l = append(*l, t)
		}
	}
	return nil
}

// followEvents prints the events on the events stream as they arrive, until
// ctx is done or stdout refuses a write. It reads through an ordered
// consumer: nothing is acknowledged and no durable state is left behind.
func followEvents(ctx context.Context, cfg config.Config, log zerolog.Logger, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fromStart := fs.Bool("from-start", false, "print every event the stream still holds, then follow (default: only events published from now on)")
	org := fs.String("org", "", "only the events of this org")
	lead := fs.String("lead", "", "only the events of this lead (the upstream lead id, the CloudEvents subject)")
	format := fs.String("format", "json", "json: each event as compact JSON; text: time type orgid subject correlationid [code]")
	var types typeList
	fs.Var(&types, "type", "only events of this type; repeat the flag or separate types with commas (e.g. lead.qualified,account.created)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("events: unexpected argument %q", fs.Arg(0))
	}
	if *format != "json" && *format != "text" {
		return fmt.Errorf("events: --format must be json or text, not %q", *format)
	}
	filter := eventFilter{org: *org, lead: *lead, text: *format == "text"}

	nc, err := nats.Connect(cfg.NATSURL, nats.Name("leadflow events"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s (LEADFLOW_NATS_URL): %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	occ := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if *fromStart {
		occ.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	topo := stream.New(cfg)
	for _, t := range types {
		occ.FilterSubjects = append(occ.FilterSubjects, topo.Subject(t))
	}
	cons, err := js.OrderedConsumer(ctx, cfg.EventsStream, occ)
	if err != nil {
		return fmt.Errorf("follow stream %s (LEADFLOW_EVENTS_STREAM): %w", cfg.EventsStream, err)
	}

	failed := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		line, err := filter.render(m.Data())
		if err != nil {
			log.Warn().Err(err).Str("subject", m.Subject()).Msg("not a CloudEvent; skipped")
			return
		}
		if line == nil {
			return
		}
		if _, err := stdout.Write(line); err != nil {
			select {
			case failed <- err:
			default:
			}
		}
	})
	if err != nil {
		return fmt.Errorf("follow stream %s: %w", cfg.EventsStream, err)
	}
	select {
	case <-ctx.Done():
	case err = <-failed:
	}
	cc.Stop()
	<-cc.Closed()
	return err
}

// render is the line printed for one event, or nil when the filter leaves
// it out.
func (f eventFilter) render(raw []byte) ([]byte, error) {
	var e struct {
		Type          string          `json:"type"`
		Subject       string          `json:"subject"`
		Time          string          `json:"time"`
		OrgID         string          `json:"orgid"`
		CorrelationID string          `json:"correlationid"`
		Data          json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	if e.Type == "" {
		return nil, errors.New("no type")
	}
	if (f.org != "" && e.OrgID != f.org) || (f.lead != "" && e.Subject != f.lead) {
		return nil, nil
	}
	if !f.text {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, err
		}
		b.WriteByte('\n')
		return b.Bytes(), nil
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	line := strings.Join([]string{dash(e.Time), e.Type, dash(e.OrgID), dash(e.Subject), dash(e.CorrelationID)}, " ")
	if strings.HasSuffix(e.Type, ".rejected") {
		var d struct {
			Code string `json:"code"`
		}
		// A rejection's data is an object with a code; anything else
		// prints without one.
		if json.Unmarshal(e.Data, &d) == nil && d.Code != "" {
			line += " " + d.Code
		}
	}
	return []byte(line + "\n"), nil
}
