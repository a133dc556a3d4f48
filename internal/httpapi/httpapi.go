// Package httpapi serves leadflow's operational endpoints: /healthz (the
// process is alive), /readyz (the database, NATS and the streams are ready)
// and /metrics (Prometheus).
package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"
)

// Check is one readiness check; a nil error means ready.
type Check struct {
	Name string
	Func func(context.Context) error
}

// Handler returns the mux for /healthz and /readyz.
func Handler(checks ...Check) http.Handler { return HandlerWith(nil, checks...) }

// HandlerWith is Handler plus GET /metrics served by metrics (see
// metrics.Metrics.Handler); a nil metrics handler leaves /metrics out.
func HandlerWith(metrics http.Handler, checks ...Check) http.Handler {
	mux := http.NewServeMux()
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		status, code := map[string]string{}, http.StatusOK
		for _, c := range checks {
			if err := c.Func(ctx); err != nil {
				status[c.Name], code = err.Error(), http.StatusServiceUnavailable
			} else {
				status[c.Name] = "ok"
			}
		}
		writeJSON(w, code, status)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WithPprof adds Go's profiling endpoints under /debug/pprof/ to h.
func WithPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux
}
