package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// OpenTraced is Open with tracer on every connection.
func OpenTraced(ctx context.Context, url string, tracer pgx.QueryTracer) (*Store, error) {
	return open(ctx, url, 4, tracer)
}

// GenericPlans and CustomPlans switch a transaction's plan mode.
const (
	GenericPlans = genericPlans
	CustomPlans  = customPlans
)
