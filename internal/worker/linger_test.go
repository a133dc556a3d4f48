package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

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
			st, js, topo := setup(t, 5*time.Second)
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
				publishQualify(t, js, "org-linger", "Linger", i)
				time.Sleep(50 * time.Millisecond)
			}
			require.Eventually(t, func() bool {
				return countRows(t, st, `SELECT count(*) FROM leads WHERE org_id = 'org-linger' AND status = 'qualified'`) == n
			}, 20*time.Second, 20*time.Millisecond)
			require.Equal(t, tc.transactions, countRows(t, st, `SELECT count(DISTINCT qualified_at) FROM leads WHERE org_id = 'org-linger'`))
		})
	}
}
