// Package store keeps leadflow's state in PostgreSQL: migrations, the
// transaction that applies one request, idempotency records, org settings and
// the transactional outbox.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
	"github.com/leadflow/leadflow/internal/conversion"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is leadflow's PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url with at most maxConns connections
// (0: pgxpool's default).
func Open(ctx context.Context, url string, maxConns int32) (*Store, error) {
	return open(ctx, url, maxConns, nil)
}

func open(ctx context.Context, url string, maxConns int32, tracer pgx.QueryTracer) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// Statements are prepared once per connection. Outside the processing
	// of requests each execution is planned with its values, as unnamed
	// statements would be; processing transactions switch to generic plans
	// (genericPlans).
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	cfg.ConnConfig.Tracer = tracer
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		registerArrays(conn.TypeMap())
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return &Store{pool: pool}, nil
}

// genericPlans, the first statement of a transaction that processes
// requests, has its statements run on generic plans, made once per
// connection and statement: planning each execution with its values cost
// PostgreSQL more than executing it, and most for the transactions of a
// few requests that moderate rates bring. A generic plan is made once,
// often while an org's tables are still empty, and then kept however they
// grow; without sequential scans, hash joins and merge joins it can only
// reach rows through an index, and every statement that runs on one has a
// single index that its conditions fit (the primary key, an arbiter, a
// probe's key: migration 004), so that a plan made on an empty table stays
// right on a large one. The statements that need their values to find
// their index (prefix and suffix probes, moving a lead's notes, undoing a
// qualification) run between customPlans and genericPlans.
const (
	genericPlans = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
		set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
		set_config('enable_mergejoin', 'off', true)`
	customPlans = `SELECT set_config('plan_cache_mode', 'force_custom_plan', true)`
)

// custom runs queue so that what it queues is planned with its values:
// between customPlans and genericPlans when the transaction runs on generic
// plans, and as it is otherwise.
func custom(b *pgx.Batch, generic bool, queue func()) {
	if !generic {
		queue()
		return
	}
	n := b.Len()
	b.Queue(customPlans)
	queue()
	if b.Len() == n+1 {
		b.QueuedQueries = b.QueuedQueries[:n]
		return
	}
	b.Queue(genericPlans)
}

// Pool is the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes every connection.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Migrate applies the embedded migrations that the database lacks. tern holds
// a session advisory lock meanwhile, so replicas starting together migrate once.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), "leadflow_schema_version")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("migrate: load: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return s.ensureAllProbeIndexes(ctx)
}

// Settings returns an org's stored settings document, "{}" when it has none.
func (s *Store) Settings(ctx context.Context, orgID string) ([]byte, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT settings FROM org_settings WHERE org_id = $1`, orgID).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return []byte("{}"), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read settings of org %q: %w", orgID, err)
	}
	return raw, nil
}

// PutSettings replaces an org's settings document. The caller validates it.
// It applies to every request processed after it commits. The probe indexes
// that its duplicate rules need are built first, if missing (probeIndex).
func (s *Store) PutSettings(ctx context.Context, orgID string, settings []byte) error {
	set, err := conversion.ParseSettings(settings)
	if err != nil {
		return err
	}
	// The indexes first: the rules apply to the next request once written.
	if err := s.ensureProbeIndexes(ctx, probeIndexes(&set)); err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `
		INSERT INTO org_settings (org_id, settings) VALUES ($1, $2)
		ON CONFLICT (org_id) DO UPDATE SET settings = excluded.settings, updated_at = now()`,
		orgID, string(settings))
	if err != nil {
		return fmt.Errorf("write settings of org %q: %w", orgID, err)
	}
	return nil
}

// Migrations is the embedded migration files, under "migrations/".
func Migrations() fs.FS { return migrations }
