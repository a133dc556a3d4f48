package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/stretchr/testify/require"
)

// outboxRow is one outbox row as the relay reads it.
type outboxRow struct {
	Org      *string
	Subjects []string
	Headers  []*string
}

func outboxRows(t *testing.T, conn interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) []outboxRow {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT org_id, subjects, headers::text[] FROM outbox ORDER BY seq`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outboxRow])
	require.NoError(t, err)
	return out
}

// TestOutboxRowPerOrg: a transaction writes one outbox row per org, in the
// order of each org's first event, holding that org's events in the order
// they were written; a request too broken to name its org gets a row of
// its own, without an org.
func TestOutboxRowPerOrg(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	request := func(org, key, lead, company string) *conversion.Parsed {
		return qualify(t, org, key, "", map[string]any{"id": lead, "company": company, "last_name": "L"})
	}
	batch := []*conversion.Parsed{
		request("org-x", "k1", "lead-1", "Acme"),
		request("org-y", "k2", "lead-2", "Globex"),
		conversion.Parse(conversion.SubjectQualify, []byte(`not json`)),
		request("org-x", "k3", "lead-3", "Initech"),
	}
	batch[1].Traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	outs, err := st.ProcessBatch(context.Background(), batch)
	require.NoError(t, err)
	for i, o := range outs {
		require.NoError(t, o.Err, "request %d", i)
		require.False(t, o.Deferred, "request %d", i)
	}
	ptr := func(s string) *string { return &s }
	conversion := []string{"account.created", "contact.created", "opportunity.created", "lead.qualified"}
	tp := ptr(`{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`)
	require.Equal(t, []outboxRow{
		{Org: ptr("org-x"), Subjects: append(append([]string{}, conversion...), conversion...), Headers: make([]*string, 8)},
		{Org: ptr("org-y"), Subjects: conversion, Headers: []*string{tp, tp, tp, tp}},
		{Org: nil, Subjects: []string{"lead.qualify.rejected"}, Headers: []*string{nil}},
	}, outboxRows(t, st.Pool()))
	require.Equal(t, 13, countOf(t, st, `SELECT count(DISTINCT event_id) FROM outbox_events`))
}

// TestOutboxCarriedOver: events left in the outbox of one row per event
// (before migration 007) become rows of one event each, in their order, so
// that nothing committed goes unpublished across an upgrade.
func TestOutboxCarriedOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	// The database as migration 006 left it, with three events waiting.
	_, err := st.Pool().Exec(ctx, `
		DROP VIEW outbox_events; DROP TABLE outbox;
		CREATE TABLE outbox (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, org_id text, event_id uuid NOT NULL,
			subject text NOT NULL, payload bytea NOT NULL, headers jsonb, created_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO outbox (org_id, event_id, subject, payload, headers) VALUES
			('org-a', '0193a8d6-0000-7000-8000-000000000001', 'account.created', '{"n":1}', NULL),
			(NULL, '0193a8d6-0000-7000-8000-000000000002', 'lead.qualify.rejected', '{"n":2}', NULL),
			('org-a', '0193a8d6-0000-7000-8000-000000000003', 'lead.qualified', '{"n":3}', '{"traceparent": "t"}');
		UPDATE leadflow_schema_version SET version = 6`)
	require.NoError(t, err)
	require.NoError(t, st.Migrate(ctx))

	rows, err := st.Pool().Query(ctx, `SELECT event_id::text, subject, payload::text, headers::text FROM outbox_events ORDER BY seq, position`)
	require.NoError(t, err)
	type event struct {
		ID, Subject, Payload string
		Headers              *string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[event])
	require.NoError(t, err)
	h := `{"traceparent": "t"}`
	require.Equal(t, []event{
		{"0193a8d6-0000-7000-8000-000000000001", "account.created", `\x7b226e223a317d`, nil},
		{"0193a8d6-0000-7000-8000-000000000002", "lead.qualify.rejected", `\x7b226e223a327d`, nil},
		{"0193a8d6-0000-7000-8000-000000000003", "lead.qualified", `\x7b226e223a337d`, &h},
	}, got)
	require.Equal(t, 3, countOf(t, st, `SELECT count(*) FROM outbox WHERE cardinality(event_ids) = 1`))
}
