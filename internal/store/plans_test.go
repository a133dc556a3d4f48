package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/stretchr/testify/require"
)

// generic is the statements that ran on generic plans: those between
// GenericPlans and the end of the transaction, outside CustomPlans.
func (r *trips) generic() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	on := false
	for _, sql := range slices.Concat(r.all...) {
		switch low := strings.ToLower(strings.TrimSpace(sql)); {
		case sql == store.GenericPlans:
			on = true
		case sql == store.CustomPlans, low == "commit", low == "rollback", low == "begin":
			on = false
		case on && !seen[sql] && regexp.MustCompile(`^(select|insert|update|delete|with)\b`).MatchString(low):
			seen[sql] = true
			out = append(out, sql)
		}
	}
	return out
}

// orgOnly is an index condition on the org alone: a walk of the whole org.
var orgOnly = regexp.MustCompile(`^\(+\w*\.?org_id = [\w.$]+\)+$`)

// genericPlanFaults explains sql's generic plan in the connection's
// transaction (on generic plans) and lists what in it does not reach its
// rows through an index condition of its own: a sequential scan, a hash or
// merge join, an index walked whole or by org alone.
func genericPlanFaults(t *testing.T, ctx context.Context, tx pgx.Tx, name, sql string) []string {
	t.Helper()
	sd, err := tx.Conn().Prepare(ctx, name, sql)
	require.NoError(t, err, sql)
	nulls := strings.TrimSuffix(strings.Repeat("NULL, ", len(sd.ParamOIDs)), ", ")
	explain := "EXPLAIN (FORMAT JSON) EXECUTE " + name
	if nulls != "" {
		explain += "(" + nulls + ")"
	}
	var doc []struct {
		Plan map[string]any `json:"Plan"`
	}
	require.NoError(t, tx.QueryRow(ctx, explain).Scan(&doc), sql)
	var faults []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		typ, _ := n["Node Type"].(string)
		cond, _ := n["Index Cond"].(string)
		switch {
		case typ == "Seq Scan", typ == "Hash Join", typ == "Merge Join":
			faults = append(faults, fmt.Sprintf("%s on %v", typ, n["Relation Name"]))
		case strings.HasPrefix(typ, "Index") || typ == "Bitmap Index Scan":
			if cond == "" || orgOnly.MatchString(cond) {
				faults = append(faults, fmt.Sprintf("%s using %v, condition %q", typ, n["Index Name"], cond))
			}
		}
		children, _ := n["Plans"].([]any)
		for _, c := range children {
			walk(c.(map[string]any))
		}
	}
	walk(doc[0].Plan)
	return faults
}

// TestGenericPlansUseTheirIndex: every statement that a processing
// transaction runs on a generic plan, planned as a connection would plan it
// first, on empty tables, reaches its rows through an index condition made
// for it, so that the plan stays right when the tables have grown. The
// statements are those of conversions, links, a lead's notes moved, an
// undo and the duplicate rules of every kind, recorded as they ran.
func TestGenericPlansUseTheirIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := &trips{}
	st, err := store.OpenTraced(ctx, testenv.Database(t), 4, rec)
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.PutSettings(ctx, "org-p", []byte(`{"duplicate_rules": {
		"account": [{"name": "name", "field": "name", "match": "exact"}, {"name": "name_prefix", "field": "name", "match": "first_n", "n": 4},
		            {"name": "phone_suffix", "field": "phone", "match": "last_n", "n": 7}],
		"contact": [{"name": "email", "field": "email", "match": "exact"}, {"name": "mobile_blank", "field": "mobile_phone", "match": "exact", "match_blanks": true}]}}`)))
	run := func(subject, key string, lead map[string]any, extra map[string]any) store.Outcome {
		t.Helper()
		req := map[string]any{"idempotency_key": key, "org_id": "org-p",
			"actor": map[string]any{"id": "u", "roles": []string{"sales_agent"}}, "lead": lead}
		for k, v := range extra {
			req[k] = v
		}
		body, err := json.Marshal(req)
		require.NoError(t, err)
		p := conversion.Parse(subject, body)
		require.Nil(t, p.Invalid)
		o, err := st.Process(ctx, p)
		require.NoError(t, err)
		return o
	}
	notes := []any{map[string]any{"id": "n1", "body": "hello"}}
	atts := []any{map[string]any{"id": "a1", "file_name": "card.png"}}
	o := run(conversion.SubjectQualify, "q1", map[string]any{"id": "l1", "company": "Acme", "last_name": "Coyote",
		"email": "w@acme.example", "business_phone": "+1 555 000 0001", "notes": notes, "attachments": atts}, nil)
	require.Equal(t, "lead.qualified", o.Event)
	o = run(conversion.SubjectQualify, "q2", map[string]any{"id": "l2", "company": "Acme", "last_name": "Runner",
		"email": "r@acme.example"}, map[string]any{"on_duplicate": "use_existing"})
	require.Equal(t, "lead.qualified", o.Event)
	o = run(conversion.SubjectDisqualify, "d3", map[string]any{"id": "l3", "company": "Initech", "notes": notes, "attachments": atts},
		map[string]any{"reason": "no_longer_interested"})
	require.Equal(t, "lead.disqualified", o.Event)
	o = run(conversion.SubjectReactivate, "r3", map[string]any{"id": "l3"}, nil)
	require.Equal(t, "lead.reactivated", o.Event)
	o = run(conversion.SubjectQualify, "q3", map[string]any{"id": "l3", "company": "Initech", "last_name": "Lumbergh", "mobile_phone": "+1 555 999 9999"}, nil)
	require.Equal(t, "lead.qualified", o.Event)
	o = run(conversion.SubjectUnqualify, "u3", map[string]any{"id": "l3"}, nil)
	require.Equal(t, "lead.unqualified", o.Event)

	stmts := rec.generic()
	require.NotEmpty(t, stmts)
	joined := strings.Join(stmts, "\n")
	for _, table := range []string{"INSERT INTO leads", "INSERT INTO contacts", "FROM idempotency_keys", "CROSS JOIN LATERAL"} {
		require.Contains(t, joined, table)
	}

	// Planned afresh on empty tables, as a new connection would.
	conn, err := pgx.Connect(ctx, testenv.Database(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = tx.Exec(ctx, store.GenericPlans)
	require.NoError(t, err)
	for i, sql := range stmts {
		require.Empty(t, genericPlanFaults(t, ctx, tx, fmt.Sprintf("s%d", i), sql), sql)
	}

	// A probe by (value, org) would find an index by its org alone.
	faults := genericPlanFaults(t, ctx, tx, "byorg", `SELECT q.n, m.id FROM unnest($1::int4[], $2::text[], $3::text[]) AS q(n, org_id, value)
		CROSS JOIN LATERAL (SELECT id FROM accounts WHERE name_norm = q.value AND name_norm <> '' AND org_id = q.org_id LIMIT 20) m`)
	require.NotEmpty(t, faults)
}
