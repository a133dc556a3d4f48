package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/stretchr/testify/require"
)

// indexState is "valid", "invalid" or "missing".
func indexState(t *testing.T, st *store.Store, name string) string {
	t.Helper()
	var valid []bool
	rows, err := st.Pool().Query(context.Background(), `SELECT i.indisvalid FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1`, name)
	require.NoError(t, err)
	for rows.Next() {
		var v bool
		require.NoError(t, rows.Scan(&v))
		valid = append(valid, v)
	}
	require.NoError(t, rows.Err())
	switch {
	case len(valid) == 0:
		return "missing"
	case valid[0]:
		return "valid"
	}
	return "invalid"
}

// TestProbeIndexesOnDemand: the probe indexes of rules that no default rule
// needs exist only once an org's rules name them: settings put builds them
// before the rules apply, a migration run builds those of settings written
// by other means, and an index a failed build left invalid is built again.
// Without its index, a rule still finds its duplicates.
func TestProbeIndexesOnDemand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	for _, name := range []string{"accounts_name_key", "accounts_website_key", "contacts_email_key",
		"contacts_business_phone_key", "contacts_mobile_phone_key"} {
		require.Equal(t, "valid", indexState(t, st, name), "the default rules' %s", name)
	}
	for _, name := range []string{"contacts_last_name_key", "contacts_first_name_norm_rev", "accounts_phone_norm_rev"} {
		require.Equal(t, "missing", indexState(t, st, name))
	}

	require.NoError(t, st.PutSettings(ctx, "org-x", []byte(`{"duplicate_rules": {
		"contact": [{"name": "surname", "field": "last_name", "match": "exact"}]}}`)))
	require.Equal(t, "valid", indexState(t, st, "contacts_last_name_key"))
	require.Equal(t, "missing", indexState(t, st, "contacts_first_name_norm_rev"))

	// Written straight into the table: no index until the next migration
	// run, and the rule finds its duplicate all the same.
	_, err := st.Pool().Exec(ctx, `INSERT INTO org_settings (org_id, settings) VALUES ('org-y', '{"duplicate_rules": {
		"contact": [{"name": "given_suffix", "field": "first_name", "match": "last_n", "n": 3}]}}')`)
	require.NoError(t, err)
	qualify := func(key, lead, company, first string) store.Outcome {
		body, err := json.Marshal(map[string]any{"idempotency_key": key, "org_id": "org-y",
			"actor": map[string]any{"id": "u", "roles": []string{"sales_agent"}}, "on_duplicate": "reject",
			"lead": map[string]any{"id": lead, "company": company, "first_name": first, "last_name": "L" + key}})
		require.NoError(t, err)
		p := conversion.Parse(conversion.SubjectQualify, body)
		require.Nil(t, p.Invalid)
		o, err := st.Process(ctx, p)
		require.NoError(t, err)
		return o
	}
	require.Equal(t, "lead.qualified", qualify("y1", "ly1", "Alpha", "Johanna").Event)
	require.Equal(t, "duplicates_found", qualify("y2", "ly2", "Beta", "Anna").Code, "same last three letters")
	require.Equal(t, "missing", indexState(t, st, "contacts_first_name_norm_rev"))
	require.NoError(t, st.Migrate(ctx))
	require.Equal(t, "valid", indexState(t, st, "contacts_first_name_norm_rev"))
	require.Equal(t, "duplicates_found", qualify("y3", "ly3", "Gamma", "Hanna").Code, "through the index")

	// An index left invalid is built again.
	_, err = st.Pool().Exec(ctx, `UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'contacts_last_name_key'::regclass`)
	require.NoError(t, err)
	require.Equal(t, "invalid", indexState(t, st, "contacts_last_name_key"))
	require.NoError(t, st.PutSettings(ctx, "org-x", []byte(`{"duplicate_rules": {
		"contact": [{"name": "surname", "field": "last_name", "match": "exact"}]}}`)))
	require.Equal(t, "valid", indexState(t, st, "contacts_last_name_key"))
}
