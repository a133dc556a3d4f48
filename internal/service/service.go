// Package service wires leadflow's parts into the running service: the
// store, the JetStream topology, the workers, the outbox relay and the
// operational HTTP endpoints.
package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/httpapi"
	"github.com/leadflow/leadflow/internal/metrics"
	"github.com/leadflow/leadflow/internal/query"
	"github.com/leadflow/leadflow/internal/relay"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/leadflow/leadflow/internal/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Service is a started leadflow: Run it until its context is done.
type Service struct {
	cfg   config.Config
	log   zerolog.Logger
	store *store.Store
	nc    *nats.Conn
	js    jetstream.JetStream
	topo  stream.Topology
	ln    net.Listener
	query *query.Server // the leadflow NATS service
}

// Start connects to PostgreSQL and NATS, applies migrations, declares the
// streams and the consumer, starts the leadflow NATS service and listens on
// the HTTP address.
func Start(ctx context.Context, cfg config.Config, log zerolog.Logger) (*Service, error) {
	s := &Service{cfg: cfg, log: log, topo: stream.New(cfg)}
	var err error
	if s.store, err = store.Open(ctx, cfg.DatabaseURL, cfg.MaxConns()); err != nil {
		return nil, err
	}
	if err := s.store.Migrate(ctx); err != nil {
		s.store.Close()
		return nil, err
	}
	if err := s.store.Warm(ctx, cfg.Workers+1); err != nil {
		s.store.Close()
		return nil, err
	}
	s.nc, err = nats.Connect(cfg.NATSURL, nats.Name("leadflow"), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: a disconnect we asked for, at shutdown
				log.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info().Msg("NATS reconnected") }))
	if err != nil {
		s.store.Close()
		return nil, fmt.Errorf("connect to NATS at %s: %w", cfg.NATSURL, err)
	}
	if s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(4*cfg.RelayBatch)); err != nil {
		s.close()
		return nil, err
	}
	if err := s.topo.Ensure(ctx, s.js); err != nil {
		s.close()
		return nil, err
	}
	if s.query, err = query.Start(s.nc, s.store, query.Config{Prefix: cfg.SubjectPrefix}, log); err != nil {
		s.close()
		return nil, err
	}
	if s.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		s.close()
		return nil, fmt.Errorf("LEADFLOW_HTTP_ADDR: listen on %s: %w", cfg.HTTPAddr, err)
	}
	return s, nil
}

// Addr is the address the HTTP endpoints listen on.
func (s *Service) Addr() string { return s.ln.Addr().String() }

// Store is the service's store.
func (s *Service) Store() *store.Store { return s.store }

func (s *Service) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	s.store.Close()
}

// Run serves until ctx is done, then shuts down gracefully: it stops
// fetching, finishes the requests in flight, lets the relay publish what they
// committed, and closes its connections, all within the ack wait.
func (s *Service) Run(ctx context.Context) error {
	defer s.close()
	m := metrics.New(s.store.Pool())
	var mux http.Handler = httpapi.HandlerWith(m.Handler(),
		httpapi.Check{Name: "database", Func: s.store.Ping},
		httpapi.Check{Name: "nats", Func: func(context.Context) error {
			if !s.nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		}},
		httpapi.Check{Name: "streams", Func: func(ctx context.Context) error { return s.topo.Ready(ctx, s.js) }},
	)
	if s.cfg.Pprof {
		mux = httpapi.WithPprof(mux)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	w := worker.New(worker.Config{
		Stream: s.cfg.RequestsStream, Consumer: s.cfg.Consumer, Workers: s.cfg.Workers, Batch: s.cfg.Batch, MaxDeliver: s.cfg.MaxDeliver,
		AckWait: s.cfg.AckWait, BackoffMin: s.cfg.BackoffMin, BackoffMax: s.cfg.BackoffMax, Linger: s.cfg.BatchLinger,
	}, s.js, s.store, s.topo, m, s.log)
	r := relay.New(s.store.Pool(), s.js, s.topo, relay.Config{
		Batch: s.cfg.RelayBatch, Poll: s.cfg.RelayPoll, MaxBackoff: s.cfg.RelayMaxBackoff,
	}, m, s.log)

	workerCtx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("http: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := w.Run(workerCtx); err != nil {
			errs <- err
		}
		// The relay stops after the workers, so that it publishes what the
		// last requests committed.
		stopRelay()
	}()
	go func() {
		defer wg.Done()
		_ = r.Run(relayCtx, s.cfg.AckWait/3)
	}()
	s.log.Info().Str("http_addr", s.Addr()).Int("workers", s.cfg.Workers).Msg("leadflow serving")

	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		s.log.Error().Str("error", store.Redact(err)).Msg("shutting down after a failure")
	}
	stopWorkers()
	_ = s.query.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	s.log.Info().Msg("leadflow stopped")
	return err
}
