package metrics_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/leadflow/leadflow/internal/metrics"
)

// A worker records each delivery it handled; /metrics serves the counts.
func Example() {
	m := metrics.New(nil) // pass the store's pool to report the outbox and the pool too
	m.Request("lead.qualify.requested", metrics.Acked, "", 12*time.Millisecond, 1)
	m.Request("lead.qualify.requested", metrics.Rejected, "duplicates_found", 8*time.Millisecond, 1)
	m.Published("lead.qualified", 1)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.Contains(line, `subject="lead.qualify.requested"`) && strings.HasPrefix(line, "leadflow_requests_total") ||
			strings.HasPrefix(line, `leadflow_events_published_total{type="lead.qualified"}`) {
			fmt.Println(line)
		}
	}
	// Output:
	// leadflow_events_published_total{type="lead.qualified"} 1
	// leadflow_requests_total{code="",result="acked",subject="lead.qualify.requested"} 1
	// leadflow_requests_total{code="",result="dead_lettered",subject="lead.qualify.requested"} 0
	// leadflow_requests_total{code="",result="retried",subject="lead.qualify.requested"} 0
	// leadflow_requests_total{code="duplicates_found",result="rejected",subject="lead.qualify.requested"} 1
}
