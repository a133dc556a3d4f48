// Package metrics holds leadflow's Prometheus metrics on a registry of its
// own: what the workers did with each request, what the relay published, the
// outbox backlog, the database pool, and the Go runtime and process.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Results of handling one delivery of a request, the result label of
// leadflow_requests_total.
const (
	// Acked: the request was converted (or disqualified, or reactivated),
	// committed and acknowledged.
	Acked = "acked"
	// Rejected: the request was refused with a rejection code and
	// acknowledged.
	Rejected = "rejected"
	// Retried: the delivery failed transiently and was scheduled for
	// redelivery.
	Retried = "retried"
	// DeadLettered: the request went to the dead-letter subject after its
	// last delivery.
	DeadLettered = "dead_lettered"
	// Replayed: the request had been handled before (a redelivery or a resend
	// of the same body); its recorded outcome was published again.
	Replayed = "replayed"
)

// DurationBuckets are the upper bounds, in seconds, of
// leadflow_request_duration_seconds: 1 ms to 10 s.
var DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics is leadflow's metrics registry. Its methods are safe for concurrent
// use and do not allocate once a label combination has been seen; a nil
// *Metrics records nothing, so that callers need no check.
type Metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	redeliveries *prometheus.CounterVec
	published    *prometheus.CounterVec

	mu       sync.RWMutex
	bySubj   map[string]subjectSeries
	byResult map[resultKey]prometheus.Counter
	byType   map[string]prometheus.Counter
}

type subjectSeries struct {
	duration     prometheus.Observer
	redeliveries prometheus.Counter
}

type resultKey struct{ subject, result, code string }

// New returns the metrics of one leadflow process. With a pool, a scrape also
// reports the outbox backlog (a query with a short timeout) and the pool's
// statistics; pool may be nil. The series of every request subject and event
// type of the contract exist from the start, at zero.
func New(pool *pgxpool.Pool) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leadflow_requests_total",
			Help: "Deliveries of requests handled, by subject, result (acked, rejected, retried, dead_lettered, replayed) and rejection code.",
		}, []string{"subject", "result", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "leadflow_request_duration_seconds",
			Help:    "Time taken to handle one delivery of a request, by subject.",
			Buckets: DurationBuckets,
		}, []string{"subject"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leadflow_redeliveries_total",
			Help: "Deliveries of requests after their first, by subject.",
		}, []string{"subject"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leadflow_events_published_total",
			Help: "Events the outbox relay published and JetStream acknowledged, by type.",
		}, []string{"type"}),
		bySubj:   map[string]subjectSeries{},
		byResult: map[resultKey]prometheus.Counter{},
		byType:   map[string]prometheus.Counter{},
	}
	m.reg.MustRegister(m.requests, m.duration, m.redeliveries, m.published,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if pool != nil {
		m.reg.MustRegister(NewOutboxCollector(pool), NewPoolCollector(pool))
	}
	for _, s := range stream.RequestSubjects {
		m.subject(s)
		for _, r := range []string{Acked, Retried, DeadLettered} {
			m.result(s, r, "")
		}
	}
	for _, t := range stream.EventSubjects {
		m.eventType(t)
	}
	return m
}

// Request records one delivery of a request on subject (as the contract
// names it, without LEADFLOW_SUBJECT_PREFIX): its result (Acked, Rejected,
// Retried, DeadLettered or Replayed), its rejection code ("" when none), how
// long handling it took, and its delivery count from the message metadata
// (above 1 counts a redelivery).
func (m *Metrics) Request(subject, result, code string, took time.Duration, delivery uint64) {
	if m == nil {
		return
	}
	s := m.subject(subject)
	m.result(subject, result, code).Inc()
	s.duration.Observe(took.Seconds())
	if delivery > 1 {
		s.redeliveries.Inc()
	}
}

// Published records n events of type typ (the contract subject, e.g.
// "lead.qualified") published by the relay.
func (m *Metrics) Published(typ string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.eventType(typ).Add(float64(n))
}

// Handler serves the registry in the Prometheus exposition format. A
// collector that fails (the outbox query, say) leaves out its own series and
// counts an error in promhttp_metric_handler_errors_total; the rest is served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	})
}

// Registerer is where other parts of leadflow may add collectors of their own.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// The lookups below resolve a label combination once and cache it, so that
// the hot path takes a read lock and a map lookup, and never allocates.

func (m *Metrics) subject(subject string) subjectSeries {
	m.mu.RLock()
	s, ok := m.bySubj[subject]
	m.mu.RUnlock()
	if ok {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.bySubj[subject]; ok {
		return s
	}
	s = subjectSeries{duration: m.duration.WithLabelValues(subject), redeliveries: m.redeliveries.WithLabelValues(subject)}
	m.bySubj[subject] = s
	return s
}

func (m *Metrics) result(subject, result, code string) prometheus.Counter {
	k := resultKey{subject, result, code}
	m.mu.RLock()
	c, ok := m.byResult[k]
	m.mu.RUnlock()
	if ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.byResult[k]; ok {
		return c
	}
	c = m.requests.WithLabelValues(subject, result, code)
	m.byResult[k] = c
	return c
}

func (m *Metrics) eventType(typ string) prometheus.Counter {
	m.mu.RLock()
	c, ok := m.byType[typ]
	m.mu.RUnlock()
	if ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.byType[typ]; ok {
		return c
	}
	c = m.published.WithLabelValues(typ)
	m.byType[typ] = c
	return c
}
