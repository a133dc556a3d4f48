package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// OpenTraced is Open with tracer on every connection.
func OpenTraced(ctx context.Context, url string, maxConns int32, tracer pgx.QueryTracer) (*Store, error) {
	return open(ctx, url, maxConns, tracer)
}

// Rehearsal is the batch that Warm rehearses on its i-th connection.
var Rehearsal = rehearsal

// GenericPlans and CustomPlans switch a transaction's plan mode.
const (
	GenericPlans = genericPlans
	CustomPlans  = customPlans
)

// StatementSQL is the SQL of the statement prepared under name, or name
// itself when it is not such a name.
func StatementSQL(name string) string {
	sql := name
	statementNames.Range(func(k, v any) bool {
		if v == name {
			sql = k.(string)
			return false
		}
		return true
	})
	return sql
}

// TextArray and ByteaArray are the column arrays of the multi-row statements.
type (
	TextArray  = textArray
	ByteaArray = byteaArray
)

// RegisterArrays makes m encode them as a connection of the store does.
var RegisterArrays = registerArrays
