// Package stream declares leadflow's JetStream streams and its durable
// consumer, and names the subjects on them.
package stream

import (
	"context"
	"fmt"
	"strings"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/nats-io/nats.go/jetstream"
)

// RequestSubjects are the subjects upstream apps publish requests on.
var RequestSubjects = []string{"lead.qualify.requested", "lead.disqualify.requested", "lead.reactivate.requested",
	"lead.unqualify.requested"}

// EventSubjects are the subjects leadflow publishes events on.
var EventSubjects = []string{"lead.qualified", "lead.disqualified", "lead.reactivated", "lead.qualify.rejected",
	"lead.disqualify.rejected", "lead.reactivate.rejected", "account.created", "contact.created", "opportunity.created",
	"lead.unqualified", "lead.unqualify.rejected", "account.deleted", "contact.deleted", "opportunity.deleted"}

// Topology is the streams and consumer of one configuration.
type Topology struct {
	cfg config.Config
}

// New returns the topology of a configuration.
func New(cfg config.Config) Topology { return Topology{cfg: cfg} }

// Subject is a contract subject ("lead.qualified") as published, with the prefix.
func (t Topology) Subject(s string) string { return t.cfg.SubjectPrefix + s }

// Unprefixed is a published subject as the contract names it.
func (t Topology) Unprefixed(s string) string { return strings.TrimPrefix(s, t.cfg.SubjectPrefix) }

// DeadLetterSubject is where a request that arrived on subject goes to die.
func (t Topology) DeadLetterSubject(subject string) string {
	return t.cfg.DeadLetterPrefix + "." + subject
}

func (t Topology) prefixed(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = t.Subject(s)
	}
	return out
}

// Ensure creates or updates the three streams and the durable consumer, all
// with file storage. It is idempotent: every replica runs it at start-up.
func (t Topology) Ensure(ctx context.Context, js jetstream.JetStream) error {
	c := t.cfg
	retention := jetstream.LimitsPolicy
	if c.RequestsRetention == "workqueue" {
		retention = jetstream.WorkQueuePolicy
	}
	streams := []jetstream.StreamConfig{
		{Name: c.RequestsStream, Subjects: t.prefixed(RequestSubjects), Retention: retention, MaxAge: c.RequestsMaxAge,
			Description: "lead requests from upstream apps"},
		{Name: c.EventsStream, Subjects: t.prefixed(EventSubjects), Retention: jetstream.LimitsPolicy, MaxAge: c.EventsMaxAge,
			Description: "leadflow's conversion events"},
		{Name: c.DeadLetterStream, Subjects: []string{c.DeadLetterPrefix + ".>"}, Retention: jetstream.LimitsPolicy,
			MaxAge: c.DeadLetterMaxAge, Description: "requests leadflow gave up on, with the last error"},
	}
	for _, s := range streams {
		s.Storage = jetstream.FileStorage
		s.Replicas = c.Replicas
		s.Duplicates = c.DuplicateWindow
		if _, err := js.CreateOrUpdateStream(ctx, s); err != nil {
			return fmt.Errorf("create or update stream %s: %w", s.Name, err)
		}
	}
	_, err := js.CreateOrUpdateConsumer(ctx, c.RequestsStream, jetstream.ConsumerConfig{
		Durable:     c.Consumer,
		Description: "leadflow workers",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     c.AckWait,
		// leadflow counts deliveries itself and dead-letters at
		// LEADFLOW_MAX_DELIVER, so that a request whose dead letter could
		// not be published is delivered again rather than dropped.
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
		// No filter: the stream holds only request subjects, and servers
		// before 2.10 refuse multiple filter subjects.
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 0,
	})
	if err != nil {
		return fmt.Errorf("create or update consumer %s on %s: %w", c.Consumer, c.RequestsStream, err)
	}
	return nil
}

// Ready reports whether the streams and the consumer exist.
func (t Topology) Ready(ctx context.Context, js jetstream.JetStream) error {
	for _, name := range []string{t.cfg.RequestsStream, t.cfg.EventsStream, t.cfg.DeadLetterStream} {
		if _, err := js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	if _, err := js.Consumer(ctx, t.cfg.RequestsStream, t.cfg.Consumer); err != nil {
		return fmt.Errorf("consumer %s: %w", t.cfg.Consumer, err)
	}
	return nil
}
