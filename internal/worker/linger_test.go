package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// TestLingerSharesATransaction: requests that trickle in while the workers
// are idle share one transaction when they arrive within the linger of the
// first, and get one each without it. A transaction's requests share their
// qualification time.
func TestLingerSharesATransaction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		linger       time.Duration
		transactions int
	}{{linger: 2 * time.Second, transactions: 1}, {linger: 0, transactions: 5}} {
		t.Run(fmt.Sprintf("linger %v", tc.linger), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st, err := store.Open(ctx, testenv.Database(t), 8)
			require.NoError(t, err)
			t.Cleanup(st.Close)
			srv := testenv.StartNATS(t)
			nc, err := nats.Connect(srv.URL())
			require.NoError(t, err)
			t.Cleanup(nc.Close)
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			cfg := config.Config{RequestsStream: "LEAD_REQUESTS", EventsStream: "LEAD_EVENTS", DeadLetterStream: "LEAD_DEAD_LETTERS",
				DeadLetterPrefix: "leadflow.dead", Consumer: "leadflow", AckWait: 5 * time.Second, MaxAckPending: 100, Replicas: 1,
				DuplicateWindow: time.Minute, RequestsRetention: "limits"}
			topo := stream.New(cfg)
			require.NoError(t, topo.Ensure(ctx, js))
			w := New(Config{Stream: "LEAD_REQUESTS", Consumer: "leadflow", Workers: 4, Batch: 16, MaxDeliver: 5,
				AckWait: 5 * time.Second, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Linger: tc.linger},
				js, st, topo, nil, zerolog.Nop())
			wctx, stop := context.WithCancel(ctx)
			defer stop()
			go w.Run(wctx) //nolint:errcheck
			// The workers are idle, one of them waiting for a request.
			time.Sleep(200 * time.Millisecond)

			const n = 5
			for i := range n {
				body, _ := json.Marshal(map[string]any{"idempotency_key": fmt.Sprintf("k%d", i), "org_id": "org-linger",
					"actor": map[string]any{"id": "u", "roles": []string{"sales_agent"}},
					"lead":  map[string]any{"id": fmt.Sprintf("l%d", i), "company": fmt.Sprintf("Linger %d", i), "last_name": "L"}})
				_, err := js.Publish(ctx, "lead.qualify.requested", body)
				require.NoError(t, err)
				time.Sleep(50 * time.Millisecond)
			}
			count := func(sql string) int {
				var c int
				require.NoError(t, st.Pool().QueryRow(ctx, sql).Scan(&c))
				return c
			}
			require.Eventually(t, func() bool {
				return count(`SELECT count(*) FROM leads WHERE org_id = 'org-linger' AND status = 'qualified'`) == n
			}, 20*time.Second, 20*time.Millisecond)
			require.Equal(t, tc.transactions, count(`SELECT count(DISTINCT qualified_at) FROM leads WHERE org_id = 'org-linger'`))
		})
	}
}
