// Package config reads leadflow's configuration from LEADFLOW_* environment
// variables.
package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Config is leadflow's configuration. Each field is read from LEADFLOW_<NAME>
// (the envconfig tag) and has the default shown.
type Config struct {
	// DatabaseURL is the PostgreSQL connection URL.
	DatabaseURL string `envconfig:"DATABASE_URL" default:"postgres://postgres@127.0.0.1:5432/leadflow?sslmode=disable"`
	// DatabaseMaxConns caps the connection pool; 0 means workers + 4.
	DatabaseMaxConns int32 `envconfig:"DATABASE_MAX_CONNS" default:"0"`
	// NATSURL is the NATS server URL (comma-separated for a cluster).
	NATSURL string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222"`
	// HTTPAddr is where /healthz, /readyz and /metrics listen.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:"127.0.0.1:8080"`
	// Workers is how many transactions one process runs at once while a
	// deep backlog waits; without one, at most two.
	Workers int `envconfig:"WORKERS" default:"8"`
	// Batch is the most requests one transaction applies; under load a
	// worker takes what is waiting, up to this many, so that round trips
	// and commits are shared. 1 gives every request a transaction of its own.
	Batch int `envconfig:"BATCH" default:"32"`
	// BatchLinger is how long a worker that found no request waiting, once
	// one arrives, waits for more to apply with it: at moderate rates,
	// transactions of a few requests cost far less than one each. 0: none.
	// With two workers applying at once at moderate rates, 5 ms rather
	// than 10 gives a lower median and a narrower tail at 1,000 requests/s,
	// for about 10% more CPU a request in leadflow and in PostgreSQL.
	BatchLinger time.Duration `envconfig:"BATCH_LINGER" default:"5ms"`
	// Pprof serves Go's profiling endpoints under /debug/pprof/ on HTTPAddr.
	Pprof bool `envconfig:"PPROF" default:"false"`
	// LogLevel is zerolog's level: debug, info, warn or error.
	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`

	// SubjectPrefix is put before every subject leadflow uses, e.g. "crm." for
	// "crm.lead.qualify.requested".
	SubjectPrefix string `envconfig:"SUBJECT_PREFIX" default:""`
	// DeadLetterPrefix is the subject prefix of dead letters; a dead request is
	// published on <DeadLetterPrefix>.<its subject>.
	DeadLetterPrefix string `envconfig:"DEAD_LETTER_PREFIX" default:"leadflow.dead"`
	// RequestsStream, EventsStream and DeadLetterStream name the streams.
	RequestsStream   string `envconfig:"REQUESTS_STREAM" default:"LEAD_REQUESTS"`
	EventsStream     string `envconfig:"EVENTS_STREAM" default:"LEAD_EVENTS"`
	DeadLetterStream string `envconfig:"DEAD_LETTER_STREAM" default:"LEAD_DEAD_LETTERS"`
	// RequestsRetention is the requests stream's retention: limits or workqueue.
	RequestsRetention string `envconfig:"REQUESTS_RETENTION" default:"limits"`
	// RequestsMaxAge, EventsMaxAge and DeadLetterMaxAge bound how long each
	// stream keeps a message (0: forever).
	RequestsMaxAge   time.Duration `envconfig:"REQUESTS_MAX_AGE" default:"168h"`
	EventsMaxAge     time.Duration `envconfig:"EVENTS_MAX_AGE" default:"168h"`
	DeadLetterMaxAge time.Duration `envconfig:"DEAD_LETTER_MAX_AGE" default:"0"`
	// Replicas is each stream's replica count (3 on a NATS cluster).
	Replicas int `envconfig:"STREAM_REPLICAS" default:"1"`
	// DuplicateWindow is how long JetStream remembers message ids to drop
	// re-publishes, on every stream. It must exceed RelayMaxBackoff.
	DuplicateWindow time.Duration `envconfig:"DUPLICATE_WINDOW" default:"2m"`

	// Consumer is the durable consumer's name, shared by every replica.
	Consumer string `envconfig:"CONSUMER" default:"leadflow"`
	// AckWait is how long a delivered request may go unacknowledged before
	// JetStream redelivers it; leadflow extends it while it waits for the
	// database. Graceful shutdown finishes within it.
	AckWait time.Duration `envconfig:"ACK_WAIT" default:"30s"`
	// MaxDeliver is how many times a request is tried before it goes to the
	// dead-letter subject.
	MaxDeliver int `envconfig:"MAX_DELIVER" default:"10"`
	// MaxAckPending caps the requests delivered and not yet acknowledged
	// across all replicas.
	MaxAckPending int `envconfig:"MAX_ACK_PENDING" default:"1000"`
	// BackoffMin and BackoffMax bound the exponential delay before a failed
	// request is redelivered.
	BackoffMin time.Duration `envconfig:"BACKOFF_MIN" default:"1s"`
	BackoffMax time.Duration `envconfig:"BACKOFF_MAX" default:"1m"`

	// RelayBatch is how many outbox events the relay publishes at once.
	RelayBatch int `envconfig:"RELAY_BATCH" default:"512"`
	// RelayPoll is how often the relay looks at the outbox when no
	// notification woke it.
	RelayPoll time.Duration `envconfig:"RELAY_POLL" default:"1s"`
	// RelayMaxBackoff is the longest the relay waits before re-publishing
	// after a failure.
	RelayMaxBackoff time.Duration `envconfig:"RELAY_MAX_BACKOFF" default:"30s"`
}

// Load reads the configuration from the environment and validates it.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process("leadflow", &c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports every invalid setting, naming its variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("LEADFLOW_%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.DatabaseURL == "" {
		bad("DATABASE_URL", "must be set")
	}
	if c.NATSURL == "" {
		bad("NATS_URL", "must be set")
	}
	if c.Workers < 1 || c.Workers > 1024 {
		bad("WORKERS", "must be between 1 and 1024, not %d", c.Workers)
	}
	if c.Batch < 1 || c.Batch > 1000 {
		bad("BATCH", "must be between 1 and 1000, not %d", c.Batch)
	}
	if c.BatchLinger < 0 || c.BatchLinger > time.Second {
		bad("BATCH_LINGER", "must be between 0 and 1s, not %s", c.BatchLinger)
	}
	if c.DatabaseMaxConns < 0 {
		bad("DATABASE_MAX_CONNS", "must not be negative")
	}
	if r := c.RequestsRetention; r != "limits" && r != "workqueue" {
		bad("REQUESTS_RETENTION", "must be limits or workqueue, not %q", r)
	}
	for name, v := range map[string]string{"REQUESTS_STREAM": c.RequestsStream, "EVENTS_STREAM": c.EventsStream,
		"DEAD_LETTER_STREAM": c.DeadLetterStream, "CONSUMER": c.Consumer} {
		if v == "" || strings.ContainsAny(v, " .*>\t") {
			bad(name, "must be a non-empty name without spaces, '.', '*' or '>', not %q", v)
		}
	}
	if c.SubjectPrefix != "" && !strings.HasSuffix(c.SubjectPrefix, ".") {
		bad("SUBJECT_PREFIX", "must end with '.', not %q", c.SubjectPrefix)
	}
	if c.DeadLetterPrefix == "" || strings.HasSuffix(c.DeadLetterPrefix, ".") {
		bad("DEAD_LETTER_PREFIX", "must be a subject without a trailing '.', not %q", c.DeadLetterPrefix)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("STREAM_REPLICAS", "must be between 1 and 5, not %d", c.Replicas)
	}
	if c.AckWait < time.Second {
		bad("ACK_WAIT", "must be at least 1s, not %s", c.AckWait)
	}
	if c.MaxDeliver < 1 {
		bad("MAX_DELIVER", "must be at least 1, not %d", c.MaxDeliver)
	}
	if c.MaxAckPending < c.Workers {
		bad("MAX_ACK_PENDING", "must be at least LEADFLOW_WORKERS (%d), not %d", c.Workers, c.MaxAckPending)
	}
	if c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin {
		bad("BACKOFF_MAX", "must be at least LEADFLOW_BACKOFF_MIN (%s) and both positive, not %s", c.BackoffMin, c.BackoffMax)
	}
	if c.RelayBatch < 1 || c.RelayBatch > 10000 {
		bad("RELAY_BATCH", "must be between 1 and 10000, not %d", c.RelayBatch)
	}
	if c.RelayPoll <= 0 {
		bad("RELAY_POLL", "must be positive")
	}
	if c.RelayMaxBackoff <= 0 || c.RelayMaxBackoff >= c.DuplicateWindow {
		bad("RELAY_MAX_BACKOFF", "must be positive and shorter than LEADFLOW_DUPLICATE_WINDOW (%s), so that a re-published event is always recognized as a duplicate; it is %s", c.DuplicateWindow, c.RelayMaxBackoff)
	}
	return errors.Join(errs...)
}

// MaxConns is the database pool size in force.
func (c *Config) MaxConns() int32 {
	if c.DatabaseMaxConns > 0 {
		return c.DatabaseMaxConns
	}
	return int32(c.Workers) + 4
}
