package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
)

// probeIndex is an index that the duplicate probes of a column need: its
// key index (org and value, for exact and first_n rules) or its reversed
// index (for last_n rules). Migrations build the key indexes of the default
// rules; the others are built when an org's rules first need them.
type probeIndex struct {
	table, column string
	reversed      bool
}

func (ix probeIndex) name() string {
	if ix.reversed {
		return ix.table + "_" + ix.column + "_norm_rev"
	}
	return ix.table + "_" + ix.column + "_key"
}

// create is the statement that builds the index without blocking writes, as
// migration 005 defines it.
func (ix probeIndex) create() string {
	col := ix.column + "_norm"
	if ix.reversed {
		return fmt.Sprintf(`CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (left(reverse(%s), %d), org_id) WHERE %s <> ''`,
			ix.name(), ix.table, col, keyChars, col)
	}
	return fmt.Sprintf(`CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s ((left(length(org_id)::text || ':' || org_id || %s, %d)) COLLATE "C") WHERE %s <> ''`,
		ix.name(), ix.table, col, keyChars, col)
}

// probeIndexes lists the indexes that the duplicate rules of sets need,
// each once.
func probeIndexes(sets ...*conversion.Settings) []probeIndex {
	var out []probeIndex
	for _, set := range sets {
		for _, typ := range probeTypes {
			for _, rule := range set.Rules(typ) {
				for _, col := range conversion.RuleColumns(typ, rule.Field) {
					ix := probeIndex{table: tables[typ], column: col, reversed: rule.Match == conversion.MatchLastN}
					if !slices.Contains(out, ix) {
						out = append(out, ix)
					}
				}
			}
		}
	}
	return out
}

// probeIndexLock serializes the builds of probe indexes across processes.
const probeIndexLock = 0x6c66_7072_6f62_6578 // "lfprobex"

// ensureProbeIndexes builds those of ixs that are missing, one at a time,
// without blocking writes; one that a failed build left invalid is dropped
// and built again. A probe without its index still finds what it should,
// by reading the org's rows.
func (s *Store) ensureProbeIndexes(ctx context.Context, ixs []probeIndex) error {
	if len(ixs) == 0 {
		return nil
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("build probe indexes: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(probeIndexLock)); err != nil {
		return fmt.Errorf("build probe indexes: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(probeIndexLock)); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck // ends the session and its lock
		}
	}()
	for _, ix := range ixs {
		var valid bool
		err := conn.QueryRow(ctx, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace`, ix.name()).Scan(&valid)
		switch {
		case err == nil && valid:
			continue
		case err == nil: // left invalid by a build that failed
			if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+ix.name()); err != nil {
				return fmt.Errorf("drop invalid probe index %s: %w", ix.name(), err)
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("build probe index %s: %w", ix.name(), err)
		}
		if _, err := conn.Exec(ctx, ix.create()); err != nil {
			return fmt.Errorf("build probe index %s: %w", ix.name(), err)
		}
	}
	return nil
}

// ensureAllProbeIndexes builds the probe indexes that the rules of every
// org's stored settings need (settings written to org_settings by other
// means than PutSettings, or kept across migration 006).
func (s *Store) ensureAllProbeIndexes(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT settings FROM org_settings WHERE settings ? 'duplicate_rules'`)
	if err != nil {
		return fmt.Errorf("read org settings: %w", err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return fmt.Errorf("read org settings: %w", err)
	}
	var sets []*conversion.Settings
	for _, raw := range raws {
		set, err := conversion.ParseSettings(raw)
		if err != nil {
			continue // decided with defaults, whose indexes the migrations build
		}
		sets = append(sets, &set)
	}
	return s.ensureProbeIndexes(ctx, probeIndexes(sets...))
}
