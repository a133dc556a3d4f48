package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/query"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/internal/testenv"
	"github.com/leadflow/leadflow/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

type bundle struct {
	t      *testing.T
	nc     *nats.Conn
	store  *store.Store
	server *query.Server
	prefix string
}

// setup starts the service on a fresh database and NATS server, with its
// subjects under prefix.
func setup(t *testing.T, prefix string) *bundle {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, testenv.Database(t), 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	srv, err := query.Start(nc, st, query.Config{Prefix: prefix, Timeout: 5 * time.Second}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Stop()) })
	// The server has the service's subscriptions once it answered a ping
	// after them; before, a request from another connection finds no responder.
	require.NoError(t, nc.Flush())
	client, err := nats.Connect(n.URL())
	require.NoError(t, err)
	t.Cleanup(client.Close)
	return &bundle{t: t, nc: client, store: st, server: srv, prefix: prefix}
}

// ask sends a request and returns the reply's body and, for an error reply,
// its code.
func (b *bundle) ask(subject string, body any) ([]byte, string) {
	b.t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		raw, err = json.Marshal(body)
		require.NoError(b.t, err)
	}
	msg, err := b.nc.Request(b.prefix+subject, raw, 5*time.Second)
	require.NoError(b.t, err)
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code != "" {
		require.NotEmpty(b.t, msg.Header.Get(micro.ErrorHeader))
		requireValid(b.t, "service/error.schema.json", msg.Data)
		var e query.Error
		require.NoError(b.t, json.Unmarshal(msg.Data, &e))
		require.Equal(b.t, code, e.Code)
	}
	return msg.Data, code
}

func requireValid(t *testing.T, schema string, raw []byte) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	errs, err := schemas.Validate(schema, doc)
	require.NoError(t, err)
	require.Empty(t, errs, "%s: %s", schema, raw)
}

func actor(roles ...string) map[string]any { return map[string]any{"id": "u-1", "roles": roles} }

func qualifyRequest(org, leadID string) map[string]any {
	return map[string]any{"idempotency_key": "k-" + leadID, "org_id": org, "actor": actor("sales_agent"),
		"lead": map[string]any{"id": leadID, "topic": "50 laptops", "first_name": "Ada", "last_name": "Lovelace",
			"company": "Acme Corp", "email": "ada@acme.example", "website": "https://acme.example"}}
}

// qualify converts a lead as a worker would.
func (b *bundle) qualify(req map[string]any) {
	b.t.Helper()
	raw, err := json.Marshal(req)
	require.NoError(b.t, err)
	out, err := b.store.Process(context.Background(), conversion.Parse(conversion.SubjectQualify, raw))
	require.NoError(b.t, err)
	require.Equal(b.t, "lead.qualified", out.Event, "code %s", out.Code)
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	b := setup(t, "")
	for _, verb := range []string{"PING", "INFO", "STATS"} {
		t.Run(verb, func(t *testing.T) {
			for _, subject := range []string{"$SRV." + verb, "$SRV." + verb + ".leadflow"} {
				msg, err := b.nc.Request(subject, nil, 5*time.Second)
				require.NoError(t, err, subject)
				var id micro.ServiceIdentity
				require.NoError(t, json.Unmarshal(msg.Data, &id))
				require.Equal(t, "leadflow", id.Name)
				require.Equal(t, query.Version, id.Version)
			}
		})
	}
	msg, err := b.nc.Request("$SRV.INFO.leadflow", nil, 5*time.Second)
	require.NoError(t, err)
	var info micro.Info
	require.NoError(t, json.Unmarshal(msg.Data, &info))
	var subjects []string
	for _, e := range info.Endpoints {
		subjects = append(subjects, e.Subject)
		require.Contains(t, e.Metadata["reply_schema"], schemas.BaseURL+"service/")
	}
	require.ElementsMatch(t, query.Subjects, subjects)
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	b := setup(t, "crm.")
	_, code := b.ask(query.SubjectLeadGet, map[string]any{"org_id": "o", "actor": actor("sales_agent"), "lead_id": "nope"})
	require.Equal(t, query.CodeNotFound, code)
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, "")
	cases := []struct {
		subject string
		body    any
		paths   []string
	}{
		{query.SubjectPreview, []byte(`{"org_id":`), []string{""}},
		{query.SubjectPreview, map[string]any{"org_id": "o", "actor": actor("sales_agent"), "lead": map[string]any{"id": "l"}}, []string{"/idempotency_key"}},
		{query.SubjectLeadGet, map[string]any{"org_id": "o", "lead_id": "l"}, []string{"/actor"}},
		{query.SubjectDuplicatesFind, map[string]any{"org_id": "o", "actor": actor("sales_agent"), "record_type": "account",
			"fields": map[string]any{"email": "a@b.example"}}, []string{"/fields/email"}},
	}
	for _, c := range cases {
		raw, code := b.ask(c.subject, c.body)
		require.Equal(t, query.CodeInvalidRequest, code, "%s: %s", c.subject, raw)
		var e query.Error
		require.NoError(t, json.Unmarshal(raw, &e))
		var paths []string
		for _, fe := range e.Details["errors"].([]any) {
			paths = append(paths, fe.(map[string]any)["path"].(string))
		}
		require.Equal(t, c.paths, paths, c.subject)
	}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	b := setup(t, "")
	ctx := context.Background()
	require.NoError(t, b.store.PutSettings(ctx, "org-p", []byte(`{"permissions": {"qualify": ["closer"], "disqualify": ["triage"], "reactivate": []}}`)))
	lead := map[string]any{"org_id": "org-p", "lead_id": "l"}

	// Reading needs a role of qualify, disqualify or reactivate.
	for role, want := range map[string]string{"closer": query.CodeNotFound, "triage": query.CodeNotFound,
		"sales_agent": query.CodeForbidden, "viewer": query.CodeForbidden} {
		lead["actor"] = actor(role)
		_, code := b.ask(query.SubjectLeadGet, lead)
		require.Equal(t, want, code, role)
		_, code = b.ask(query.SubjectDuplicatesFind, map[string]any{"org_id": "org-p", "actor": actor(role),
			"record_type": "contact", "fields": map[string]any{"email": "a@b.example"}})
		require.Equal(t, map[string]string{query.CodeNotFound: "", query.CodeForbidden: query.CodeForbidden}[want], code, role)
	}

	// Previewing needs a qualify role.
	req := qualifyRequest("org-p", "l")
	req["actor"] = actor("triage")
	raw, code := b.ask(query.SubjectPreview, req)
	require.Equal(t, query.CodeForbidden, code)
	require.Contains(t, string(raw), `"action":"qualify"`)
	req["actor"] = actor("closer")
	raw, code = b.ask(query.SubjectPreview, req)
	require.Empty(t, code)
	requireValid(t, "service/qualify.preview.reply.schema.json", raw)
}

func TestPreviewWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, "")
	raw, code := b.ask(query.SubjectPreview, qualifyRequest("org-w", "l1"))
	require.Empty(t, code)
	requireValid(t, "service/qualify.preview.reply.schema.json", raw)
	var reply query.PreviewReply
	require.NoError(t, json.Unmarshal(raw, &reply))
	require.Nil(t, reply.Rejection)
	require.Equal(t, []string{"account.created", "contact.created", "opportunity.created", "lead.qualified"}, reply.Events)
	require.Equal(t, "develop", *reply.ProcessStage)
	require.Len(t, reply.Records, 3)
	require.Equal(t, "Acme Corp", reply.Records[0].Fields["name"])

	var n int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM leads) + (SELECT count(*) FROM accounts)
		+ (SELECT count(*) FROM idempotency_keys) + (SELECT count(*) FROM outbox)`).Scan(&n))
	require.Zero(t, n)

	// Once the request was processed, a preview of it is its replay.
	b.qualify(qualifyRequest("org-w", "l1"))
	raw, code = b.ask(query.SubjectPreview, qualifyRequest("org-w", "l1"))
	require.Empty(t, code)
	requireValid(t, "service/qualify.preview.reply.schema.json", raw)
	require.NoError(t, json.Unmarshal(raw, &reply))
	require.Equal(t, []string{"lead.qualified"}, reply.Events)
	require.NotNil(t, reply.Replay)
	require.Equal(t, "develop", *reply.ProcessStage)
}

func TestLeadGetAndDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t, "")
	b.qualify(qualifyRequest("org-l", "l1"))

	raw, code := b.ask(query.SubjectLeadGet, map[string]any{"org_id": "org-l", "actor": actor("sales_agent"), "lead_id": "l1"})
	require.Empty(t, code)
	requireValid(t, "service/lead.get.reply.schema.json", raw)
	var got query.LeadReply
	require.NoError(t, json.Unmarshal(raw, &got))
	require.Equal(t, "qualified", got.Lead.Status)
	require.NotNil(t, got.Lead.Created.AccountID)
	require.Equal(t, "Acme Corp", got.Lead.Fields["company"])

	_, code = b.ask(query.SubjectLeadGet, map[string]any{"org_id": "org-other", "actor": actor("sales_agent"), "lead_id": "l1"})
	require.Equal(t, query.CodeNotFound, code, "another org's lead is not found")

	raw, code = b.ask(query.SubjectDuplicatesFind, map[string]any{"org_id": "org-l", "actor": actor("sales_agent"),
		"record_type": "account", "fields": map[string]any{"name": "  ACME corp ", "website": "http://www.acme.example/x"}})
	require.Empty(t, code)
	requireValid(t, "service/duplicates.find.reply.schema.json", raw)
	var dups query.DuplicatesReply
	require.NoError(t, json.Unmarshal(raw, &dups))
	require.Len(t, dups.Duplicates, 1)
	require.Equal(t, *got.Lead.Created.AccountID, dups.Duplicates[0]["id"])
	require.Len(t, dups.Duplicates[0]["rules"], 2)

	raw, code = b.ask(query.SubjectDuplicatesFind, map[string]any{"org_id": "org-other", "actor": actor("sales_agent"),
		"record_type": "account", "fields": map[string]any{"name": "Acme Corp"}})
	require.Empty(t, code)
	require.JSONEq(t, `{"duplicates": []}`, string(raw), "another org's records are not candidates")
}
