package schemas_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/leadflow/leadflow/internal/query"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/leadflow/leadflow/internal/worker"
	"github.com/leadflow/leadflow/schemas"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const (
	asyncAPIFile   = "asyncapi.yaml"
	jsonSchema2020 = "application/schema+json;version=2020-12"
	deadLetter     = "leadflow.dead.{subject}"
)

// asyncAPI is schemas/asyncapi.yaml, parsed.
type asyncAPI struct {
	doc map[string]any
}

func setupAsyncAPI(t *testing.T) *asyncAPI {
	t.Helper()
	raw, err := os.ReadFile(asyncAPIFile)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var doc map[string]any
	require.NoError(t, dec.Decode(&doc), "asyncapi.yaml is not valid YAML")
	var more any
	require.Error(t, dec.Decode(&more), "asyncapi.yaml holds one document")
	return &asyncAPI{doc: doc}
}

// section is a top-level or components mapping, by id.
func (a *asyncAPI) section(t *testing.T, keys ...string) map[string]map[string]any {
	t.Helper()
	v := any(a.doc)
	for _, k := range keys {
		m, ok := v.(map[string]any)
		require.True(t, ok, "%v is not a mapping", keys)
		v = m[k]
	}
	m, ok := v.(map[string]any)
	require.True(t, ok, "%v is not a mapping", keys)
	out := map[string]map[string]any{}
	for id, item := range m {
		obj, ok := item.(map[string]any)
		require.True(t, ok, "%v.%s is not a mapping", keys, id)
		out[id] = obj
	}
	return out
}

// pointer resolves a local reference ("#/a/b") within the document, and
// follows the references it lands on.
func (a *asyncAPI) pointer(t *testing.T, ref string) map[string]any {
	t.Helper()
	require.True(t, strings.HasPrefix(ref, "#/"), "not a local reference: %s", ref)
	var v any = a.doc
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := v.(type) {
		case map[string]any:
			var ok bool
			v, ok = c[tok]
			require.True(t, ok, "%s: no %q", ref, tok)
		case []any:
			i, err := strconv.Atoi(tok)
			require.NoError(t, err, ref)
			require.Less(t, i, len(c), ref)
			v = c[i]
		default:
			t.Fatalf("%s: cannot descend into %T", ref, v)
		}
	}
	obj, ok := v.(map[string]any)
	require.True(t, ok, "%s: not a mapping", ref)
	if next, ok := obj["$ref"].(string); ok && len(obj) == 1 && strings.HasPrefix(next, "#/") {
		return a.pointer(t, next)
	}
	return obj
}

// refs is every $ref value in v.
func refs(v any) []string {
	var out []string
	switch c := v.(type) {
	case map[string]any:
		for k, item := range c {
			if s, ok := item.(string); ok && k == "$ref" {
				out = append(out, s)
				continue
			}
			out = append(out, refs(item)...)
		}
	case []any:
		for _, item := range c {
			out = append(out, refs(item)...)
		}
	}
	return out
}

// dataSchema is the schema of the data of an event of type subject.
func dataSchema(subject string) string {
	if strings.HasSuffix(subject, ".rejected") {
		return "./events/rejected.schema.json"
	}
	return "./events/" + subject + ".schema.json"
}

// jsonValue is v as jsonschema decodes JSON (numbers as json.Number).
func jsonValue(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	return out
}

func TestAsyncAPIChannelsAreLeadflowSubjects(t *testing.T) {
	t.Parallel()
	a := setupAsyncAPI(t)
	require.Equal(t, "3.0.0", a.doc["asyncapi"])

	byAddress := map[string]string{}
	replyChannels := map[string]bool{}
	for id, ch := range a.section(t, "channels") {
		if ch["address"] == nil {
			// The replies of the leadflow service go to each request's
			// own reply subject: their channel has no address.
			require.Contains(t, ch, "address", "channel %s", id)
			replyChannels[id] = false
			continue
		}
		addr, _ := ch["address"].(string)
		require.NotContains(t, byAddress, addr, "channel %s", id)
		byAddress[addr] = id
	}
	want := slices.Concat(stream.RequestSubjects, stream.EventSubjects, query.Subjects, []string{deadLetter})
	require.ElementsMatch(t, want, slices.Collect(maps.Keys(byAddress)))

	// The dead-letter channel's parameter is the request subject.
	dl := a.section(t, "channels")[byAddress[deadLetter]]
	param := a.pointer(t, "#/channels/"+byAddress[deadLetter]+"/parameters/subject")
	require.NotNil(t, dl["parameters"])
	var enum []string
	for _, s := range param["enum"].([]any) {
		enum = append(enum, s.(string))
	}
	require.ElementsMatch(t, stream.RequestSubjects, enum)

	// Every channel has an operation: leadflow receives requests and sends
	// the rest.
	ops := map[string][]string{}
	for id, op := range a.section(t, "operations") {
		chRef, _ := op["channel"].(map[string]any)["$ref"].(string)
		ch := a.pointer(t, chRef)
		addr := ch["address"].(string)
		ops[addr] = append(ops[addr], op["action"].(string))
		msgs, _ := op["messages"].([]any)
		require.NotEmpty(t, msgs, "operation %s names its messages", id)
		for _, m := range msgs {
			ref := m.(map[string]any)["$ref"].(string)
			require.True(t, strings.HasPrefix(ref, chRef+"/messages/"), "operation %s: %s is a message of its channel", id, ref)
			a.pointer(t, ref)
		}
		reply, ok := op["reply"].(map[string]any)
		require.Equal(t, slices.Contains(query.Subjects, addr), ok, "operation %s: a reply for the service's endpoints only", id)
		if !ok {
			continue
		}
		replyRef := reply["channel"].(map[string]any)["$ref"].(string)
		replyChannel := strings.TrimPrefix(replyRef, "#/channels/")
		used, isReply := replyChannels[replyChannel]
		require.True(t, isReply, "operation %s replies on a channel without address", id)
		require.False(t, used, "operation %s: %s answers one operation", id, replyChannel)
		replyChannels[replyChannel] = true
		replyMsgs, _ := reply["messages"].([]any)
		require.Len(t, replyMsgs, 2, "operation %s: its reply and the service error", id)
		for _, m := range replyMsgs {
			ref := m.(map[string]any)["$ref"].(string)
			require.True(t, strings.HasPrefix(ref, replyRef+"/messages/"), "operation %s: %s is a message of its reply channel", id, ref)
			a.pointer(t, ref)
		}
	}
	for _, addr := range want {
		action := "send"
		if slices.Contains(stream.RequestSubjects, addr) || slices.Contains(query.Subjects, addr) {
			action = "receive"
		}
		require.Equal(t, []string{action}, ops[addr], "operations on %s", addr)
	}
	for id, used := range replyChannels {
		require.True(t, used, "reply channel %s answers an operation", id)
	}
}

func TestAsyncAPIRefsResolve(t *testing.T) {
	t.Parallel()
	a := setupAsyncAPI(t)
	all := refs(a.doc)
	require.NotEmpty(t, all)
	var files int
	for _, ref := range all {
		if strings.HasPrefix(ref, "#") {
			a.pointer(t, ref)
			continue
		}
		file, frag, _ := strings.Cut(ref, "#")
		require.True(t, strings.HasPrefix(file, "./"), "%s: relative to schemas/", ref)
		clean := path.Clean(file)
		require.False(t, strings.HasPrefix(clean, ".."), "%s: stays under schemas/", ref)
		raw, err := fs.ReadFile(schemas.Files(), clean)
		require.NoError(t, err, "%s: not a schema under schemas/", ref)
		require.Empty(t, frag, "%s: a whole schema file", ref)
		var doc map[string]any
		require.NoError(t, json.Unmarshal(raw, &doc), ref)
		require.Equal(t, schemas.BaseURL+clean, doc["$id"], ref)
		files++
	}
	require.Positive(t, files)
}

// compiled is every message's payload and headers schema, by message id.
type compiled struct {
	payload map[string]*jsonschema.Schema
	headers map[string]*jsonschema.Schema
}

// compileMessages compiles each message's payload with the schema files of
// this folder, and its headers as AsyncAPI Schema Objects.
func compileMessages(t *testing.T, a *asyncAPI) compiled {
	t.Helper()
	payloads := jsonschema.NewCompiler()
	payloads.AssertFormat()
	err := fs.WalkDir(schemas.Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".schema.json") {
			return err
		}
		raw, err := fs.ReadFile(schemas.Files(), p)
		require.NoError(t, err)
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		require.NoError(t, err)
		return payloads.AddResource(schemas.BaseURL+p, doc)
	})
	require.NoError(t, err)
	// AsyncAPI's own Schema Object, for headers, is a JSON Schema draft 7
	// superset.
	headers := jsonschema.NewCompiler()
	headers.DefaultDraft(jsonschema.Draft7)
	headers.AssertFormat()

	out := compiled{payload: map[string]*jsonschema.Schema{}, headers: map[string]*jsonschema.Schema{}}
	for id, msg := range a.section(t, "components", "messages") {
		payload := msg["payload"].(map[string]any)
		require.Equal(t, jsonSchema2020, payload["schemaFormat"], "message %s", id)
		schema := jsonValue(t, payload["schema"]).(map[string]any)
		schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
		// Beside the schema files, so that their relative refs resolve.
		url := schemas.BaseURL + "asyncapi." + id + ".json"
		require.NoError(t, payloads.AddResource(url, schema))
		out.payload[id], err = payloads.Compile(url)
		require.NoError(t, err, "message %s: payload", id)

		h := msg["headers"].(map[string]any)
		if ref, ok := h["$ref"].(string); ok {
			h = a.pointer(t, ref)
		}
		url = "https://leadflow.dev/asyncapi/headers/" + id + ".json"
		require.NoError(t, headers.AddResource(url, jsonValue(t, h)))
		out.headers[id], err = headers.Compile(url)
		require.NoError(t, err, "message %s: headers", id)
	}
	return out
}

func TestAsyncAPIMessages(t *testing.T) {
	t.Parallel()
	a := setupAsyncAPI(t)
	messages := a.section(t, "components", "messages")
	byName := map[string]string{}
	for id, msg := range messages {
		byName[msg["name"].(string)] = id
	}

	headerNames := func(id string) []string {
		h := messages[id]["headers"].(map[string]any)
		if ref, ok := h["$ref"].(string); ok {
			h = a.pointer(t, ref)
		}
		var out []string
		for _, r := range h["required"].([]any) {
			out = append(out, r.(string))
		}
		return out
	}

	for _, subject := range stream.RequestSubjects {
		id, ok := byName[subject]
		require.True(t, ok, "a message named %s", subject)
		schema := messages[id]["payload"].(map[string]any)["schema"]
		require.Equal(t, []string{"./requests/" + subject + ".schema.json"}, refs(schema), subject)
		require.Contains(t, headerNames(id), jetstream.MsgIDHeader, subject)
	}
	for _, subject := range stream.EventSubjects {
		id, ok := byName[subject]
		require.True(t, ok, "a message named %s", subject)
		schema := messages[id]["payload"].(map[string]any)["schema"]
		require.ElementsMatch(t, []string{"./events/cloudevent.schema.json", dataSchema(subject)}, refs(schema), subject)
		require.Contains(t, headerNames(id), jetstream.MsgIDHeader, subject)
	}
	for _, subject := range query.Subjects {
		request := "./service/" + strings.TrimPrefix(subject, "leadflow.") + ".request.schema.json"
		if subject == query.SubjectPreview {
			request = "./requests/lead.qualify.requested.schema.json"
		}
		reply := "./service/" + strings.TrimPrefix(subject, "leadflow.") + ".reply.schema.json"
		for name, schema := range map[string]string{subject: request, subject + ".reply": reply} {
			id, ok := byName[name]
			require.True(t, ok, "a message named %s", name)
			require.Equal(t, []string{schema}, refs(messages[id]["payload"].(map[string]any)["schema"]), name)
		}
	}
	serviceError, ok := byName["leadflow.service.error"]
	require.True(t, ok, "a message for the service's error replies")
	require.ElementsMatch(t, []string{"Nats-Service-Error-Code", "Nats-Service-Error"}, headerNames(serviceError))

	ch := a.pointer(t, "#/channels/deadLetter")
	require.Equal(t, deadLetter, ch["address"])
	var dead string
	for _, m := range ch["messages"].(map[string]any) {
		ref := m.(map[string]any)["$ref"].(string)
		dead = strings.TrimPrefix(ref, "#/components/messages/")
	}
	require.Contains(t, messages, dead)
	require.ElementsMatch(t,
		[]string{jetstream.MsgIDHeader, worker.HeaderError, worker.HeaderDeliveries, worker.HeaderSubject, worker.HeaderStreamSeq},
		headerNames(dead), "a dead letter's headers")
	require.Len(t, messages, len(stream.RequestSubjects)+len(stream.EventSubjects)+1+2*len(query.Subjects)+1)
}

func TestAsyncAPIExamplesMatchTheSchemas(t *testing.T) {
	t.Parallel()
	a := setupAsyncAPI(t)
	c := compileMessages(t, a)
	for id, msg := range a.section(t, "components", "messages") {
		examples, _ := msg["examples"].([]any)
		require.NotEmpty(t, examples, "message %s has an example", id)
		for i, ex := range examples {
			ex := ex.(map[string]any)
			require.NoError(t, c.payload[id].Validate(jsonValue(t, ex["payload"])), "message %s, example %d: payload", id, i)
			require.NoError(t, c.headers[id].Validate(jsonValue(t, ex["headers"])), "message %s, example %d: headers", id, i)
		}
	}

	// The schemas are not vacuous: an event of one type does not pass as
	// another, and a request without its key is refused.
	var qualified, disqualified, qualify string
	for id, msg := range a.section(t, "components", "messages") {
		switch msg["name"] {
		case "lead.qualified":
			qualified = id
		case "lead.disqualified":
			disqualified = id
		case "lead.qualify.requested":
			qualify = id
		}
	}
	ex := a.pointer(t, "#/components/messages/"+qualified+"/examples/0")
	require.Error(t, c.payload[disqualified].Validate(jsonValue(t, ex["payload"])))
	req := jsonValue(t, a.pointer(t, "#/components/messages/"+qualify+"/examples/0")["payload"]).(map[string]any)
	delete(req, "idempotency_key")
	require.Error(t, c.payload[qualify].Validate(req))
}
