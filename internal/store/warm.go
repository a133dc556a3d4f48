package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/leadflow/leadflow/internal/conversion"
	"golang.org/x/sync/errgroup"
)

// Warm opens n connections and rehearses on each the transaction that
// processes requests. A connection's first processing transaction prepares
// and plans its statements and loads the catalogs they touch, which takes
// ten times as long as the next (40 to 180 ms against 4 to 7): without the
// rehearsal, the first requests after start-up would wait for it. The
// rehearsal loads, probes and decides its requests as any transaction
// would, then runs each multi-row write statement without a row
// (writes.dry; the outbox's insert, a row per org, does not run) and rolls
// back, so that it leaves nothing in the database, not even an index entry.
func (s *Store) Warm(ctx context.Context, n int) error {
	conns := make([]*pgxpool.Conn, 0, n)
	for range min(n, int(s.pool.Config().MaxConns)) {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			for _, c := range conns {
				c.Release()
			}
			return fmt.Errorf("open database connections: %w", err)
		}
		conns = append(conns, c)
	}
	var g errgroup.Group
	for i, c := range conns {
		g.Go(func() error {
			tx := &txn{conn: c, begin: "BEGIN", rehearsal: true}
			defer tx.end(ctx)
			// Whatever it decides (rules of an org of that name could have
			// it rejected), its statements are prepared: its outcomes are
			// not for anyone.
			if _, err := process(ctx, tx, rehearsal(i)); err != nil {
				return fmt.Errorf("rehearse processing: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// rehearsal is the batch rehearsed on the i-th connection: two qualify
// requests, each creating a lead, an account, a contact, an opportunity and
// a note, in an org of the connection's own, so that rehearsals do not wait
// for each other's locks. Two, so that the batch takes the path of
// batches, savepoints included.
func rehearsal(i int) []*conversion.Parsed {
	org := fmt.Sprintf("leadflow-warm-up-%d", i)
	ps := make([]*conversion.Parsed, 2)
	for k := range ps {
		body, _ := json.Marshal(map[string]any{
			"idempotency_key": fmt.Sprintf("warm-up-%d", k),
			"org_id":          org,
			"actor":           map[string]any{"id": "leadflow", "roles": []string{"sales_agent"}},
			"lead": map[string]any{
				"id": fmt.Sprintf("lead-%d", k), "topic": "Warm-up", "first_name": "Warm", "last_name": "Up",
				"company": fmt.Sprintf("Warm-up %d", k), "email": fmt.Sprintf("warm-up-%d@example.com", k),
				"business_phone": fmt.Sprintf("+1 555 010%d", k), "website": fmt.Sprintf("https://warm-up-%d.example/", k),
				"notes": []any{map[string]any{"id": "n", "title": "call", "body": "warm-up"}},
			},
			"opportunities": []any{map[string]any{"action": "create", "fields": map[string]any{"name": "Warm-up", "estimated_value": 1}}},
			"on_duplicate":  "use_existing",
		})
		ps[k] = conversion.Parse(conversion.SubjectQualify, body)
	}
	return ps
}
