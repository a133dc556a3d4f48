package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// OutboxQueryTimeout bounds the outbox query of one scrape.
const OutboxQueryTimeout = 2 * time.Second

var (
	outboxBacklogDesc = prometheus.NewDesc("leadflow_outbox_backlog",
		"Events committed to the outbox and not yet published.", nil, nil)
	outboxAgeDesc = prometheus.NewDesc("leadflow_outbox_oldest_age_seconds",
		"Age of the oldest unpublished event in the outbox; 0 when it is empty.", nil, nil)
)

type outboxCollector struct{ pool *pgxpool.Pool }

// NewOutboxCollector reports leadflow_outbox_backlog and
// leadflow_outbox_oldest_age_seconds, read from the outbox table at scrape
// time within OutboxQueryTimeout. When the query fails, the scrape reports
// the error instead of the two series.
func NewOutboxCollector(pool *pgxpool.Pool) prometheus.Collector { return outboxCollector{pool} }

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- outboxBacklogDesc
	ch <- outboxAgeDesc
}

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), OutboxQueryTimeout)
	defer cancel()
	var (
		n   int64
		age float64
	)
	err := c.pool.QueryRow(ctx,
		`SELECT coalesce(sum(cardinality(event_ids)), 0), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM outbox`).Scan(&n, &age)
	if err != nil {
		err = fmt.Errorf("query the outbox: %w", err)
		ch <- prometheus.NewInvalidMetric(outboxBacklogDesc, err)
		ch <- prometheus.NewInvalidMetric(outboxAgeDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(outboxBacklogDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(outboxAgeDesc, prometheus.GaugeValue, max(age, 0))
}

type poolCollector struct {
	pool *pgxpool.Pool

	acquired, idle, total, maxConns, constructing       *prometheus.Desc
	acquires, acquireSeconds, canceled, empty, newConns *prometheus.Desc
}

// NewPoolCollector reports the statistics of a pgx connection pool as
// leadflow_db_pool_* series: connections acquired, idle, constructing, open
// and the maximum (gauges), and acquires, their total wait, canceled
// acquires, acquires that found no idle connection, and connections opened
// (counters).
func NewPoolCollector(pool *pgxpool.Pool) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("leadflow_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{
		pool:           pool,
		acquired:       d("acquired_conns", "Connections in use."),
		idle:           d("idle_conns", "Idle connections."),
		total:          d("total_conns", "Open connections: acquired, idle and being constructed."),
		maxConns:       d("max_conns", "The pool's maximum size (LEADFLOW_DATABASE_MAX_CONNS)."),
		constructing:   d("constructing_conns", "Connections being opened."),
		acquires:       d("acquires_total", "Successful acquires of a connection."),
		acquireSeconds: d("acquire_duration_seconds_total", "Total time spent in successful acquires."),
		canceled:       d("canceled_acquires_total", "Acquires canceled by their context."),
		empty:          d("empty_acquires_total", "Successful acquires that had to wait for a connection."),
		newConns:       d("new_conns_total", "Connections opened."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.maxConns, c.constructing,
		c.acquires, c.acquireSeconds, c.canceled, c.empty, c.newConns} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	gauge := func(d *prometheus.Desc, v int32) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.acquired, s.AcquiredConns())
	gauge(c.idle, s.IdleConns())
	gauge(c.total, s.TotalConns())
	gauge(c.maxConns, s.MaxConns())
	gauge(c.constructing, s.ConstructingConns())
	counter(c.acquires, float64(s.AcquireCount()))
	counter(c.acquireSeconds, s.AcquireDuration().Seconds())
	counter(c.canceled, float64(s.CanceledAcquireCount()))
	counter(c.empty, float64(s.EmptyAcquireCount()))
	counter(c.newConns, float64(s.NewConnsCount()))
}
