package schemas

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func jsonDoc(t *testing.T, s string) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	require.NoError(t, err)
	return v
}

func TestInlineRefs(t *testing.T) {
	t.Parallel()
	docs := map[string]any{
		"defs.schema.json": jsonDoc(t, `{"$defs": {
			"text": {"type": "string", "maxLength": 4, "description": "short"},
			"pair": {"type": "array", "items": {"$ref": "#/$defs/text"}},
			"tree": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/tree"}}}},
			"named": {"$id": "https://example.com/named", "type": "string"}
		}}`),
		"requests/r.schema.json": jsonDoc(t, `{"type": "object", "properties": {
			"a": {"$ref": "../defs.schema.json#/$defs/text", "description": "mine"},
			"b": {"$ref": "../defs.schema.json#/$defs/text", "minLength": 2},
			"c": {"$ref": "../defs.schema.json#/$defs/pair"},
			"d": {"$ref": "../defs.schema.json#/$defs/tree"},
			"e": {"$ref": "../defs.schema.json#/$defs/named"},
			"f": {"const": {"$ref": "../defs.schema.json#/$defs/text"}},
			"const": {"$ref": "../defs.schema.json#/$defs/text"},
			"g": {"anyOf": [{"$ref": "../defs.schema.json#/$defs/text"}, {"type": "null"}]}
		}}`),
	}
	require.Equal(t, 5, inlineRefs(docs), "text in pair, a, const and g's first; then pair in c")
	props := docs["requests/r.schema.json"].(map[string]any)["properties"].(map[string]any)
	prop := func(name string) string {
		b, err := json.Marshal(props[name])
		require.NoError(t, err)
		return string(b)
	}
	require.JSONEq(t, `{"type": "string", "maxLength": 4, "description": "mine"}`, prop("a"), "the referrer's annotations win")
	require.JSONEq(t, `{"$ref": "../defs.schema.json#/$defs/text", "minLength": 2}`, prop("b"), "a reference beside other keywords stays")
	require.JSONEq(t, `{"type": "array", "items": {"type": "string", "maxLength": 4, "description": "short"}}`, prop("c"))
	require.Contains(t, prop("d"), `"$ref"`, "a recursive definition stays a reference")
	require.Contains(t, prop("e"), `"$ref"`, "a definition with an identifier stays a reference")
	require.JSONEq(t, `{"const": {"$ref": "../defs.schema.json#/$defs/text"}}`, prop("f"), "data is not rewritten")
	require.JSONEq(t, `{"type": "string", "maxLength": 4, "description": "short"}`, prop("const"), "a property may be named like a keyword")
	require.JSONEq(t, `{"anyOf": [{"type": "string", "maxLength": 4, "description": "short"}, {"type": "null"}]}`, prop("g"))
	require.Zero(t, inlineRefs(docs), "nothing is left to inline")
}

// TestInlinedSchemasValidateAsWritten: the schemas as compiled (references
// inlined) give every document the same errors as the files as written, for
// every example in asyncapi.yaml and each of its variants with one value
// replaced, one field removed or one added.
func TestInlinedSchemasValidateAsWritten(t *testing.T) {
	t.Parallel()
	raw, err := readAll()
	require.NoError(t, err)
	written, err := compile(raw)
	require.NoError(t, err)
	inlined, err := compiled()
	require.NoError(t, err)

	seeds := asyncAPIExamples(t)
	require.Contains(t, seeds, "requests/lead.qualify.requested.schema.json")
	// A qualify request that reaches every part of its schema.
	seeds["requests/lead.qualify.requested.schema.json"] = append(seeds["requests/lead.qualify.requested.schema.json"], jsonDoc(t, `{
		"version": 1, "idempotency_key": "k-1", "org_id": "acme", "actor": {"id": "u-1", "roles": ["sales_agent"]},
		"lead": {"id": "l-1", "topic": "Laptops", "first_name": "Ada", "last_name": "Lovelace", "company": "Contoso",
			"email": "ada@contoso.example", "business_phone": "+44 20 7946 0000", "website": "contoso.example",
			"budget_amount": 50000, "purchase_timeframe": "this_quarter", "custom": {"tier": "gold"},
			"notes": [{"id": "n-1", "title": "Call", "body": "Wants 50", "created_at": "2025-01-02T03:04:05Z"}],
			"attachments": [{"id": "a-1", "file_name": "quote.pdf", "mime_type": "application/pdf"}]},
		"customer_type": "business", "on_duplicate": "reject", "owner_id": "u-2", "overwrite": true,
		"account": {"action": "create", "fields": {"name": "Contoso", "phone": "+1 555", "custom": {"x": 1}}},
		"contact": {"action": "existing", "id": "0193c6a2-7b7e-7000-8000-000000000001"},
		"opportunities": [
			{"action": "create", "fields": {"name": "Deal", "estimated_value": 10, "currency": "EUR", "close_date": "2025-06-30", "stage": "new"}},
			{"action": "existing", "id": "0193c6a2-7b7e-7000-8000-000000000002"}]}`))

	replacements := []any{nil, true, json.Number("12"), json.Number("-1.5"), "", strings.Repeat("x", 1100),
		"not-a-uuid", "2025-13-45", map[string]any{}, []any{}, []any{"x"}}
	checked, failing := 0, 0
	for p, docs := range seeds {
		for i, seed := range docs {
			for _, doc := range variants(seed, replacements) {
				want := validateWith(written[p], doc)
				got := validateWith(inlined[p], doc)
				require.Equal(t, want, got, "%s, example %d: %s", p, i, marshal(t, doc))
				checked++
				if len(want) > 0 {
					failing++
				}
			}
		}
	}
	t.Logf("%d documents, %d of them invalid", checked, failing)
	require.Greater(t, failing, checked/2, "the variants exercise the errors")
}

// validateWith is Validate's error list, for schema s.
func validateWith(s *jsonschema.Schema, doc any) []FieldError {
	err := s.Validate(doc)
	if err == nil {
		return nil
	}
	var out []FieldError
	collect(err.(*jsonschema.ValidationError), &out)
	sortErrors(out)
	return dedupe(out)
}

// asyncAPIExamples returns the example payloads of asyncapi.yaml's messages,
// by the path of their schema in this folder.
func asyncAPIExamples(t *testing.T) map[string][]any {
	t.Helper()
	b, err := os.ReadFile("asyncapi.yaml")
	require.NoError(t, err)
	var doc struct {
		Components struct {
			Messages map[string]struct {
				Payload struct {
					Schema map[string]any `yaml:"schema"`
				} `yaml:"payload"`
				Examples []struct {
					Payload any `yaml:"payload"`
				} `yaml:"examples"`
			} `yaml:"messages"`
		} `yaml:"components"`
	}
	require.NoError(t, yaml.Unmarshal(b, &doc))
	out := map[string][]any{}
	for _, m := range doc.Components.Messages {
		ref, _ := m.Payload.Schema["$ref"].(string)
		p, ok := strings.CutPrefix(ref, "./")
		if !ok {
			continue
		}
		for _, ex := range m.Examples {
			j, err := json.Marshal(ex.Payload)
			require.NoError(t, err)
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
			require.NoError(t, err)
			out[p] = append(out[p], v)
		}
	}
	require.NotEmpty(t, out)
	return out
}

// variants returns doc, and a copy of it for each value replaced by each of
// replacements, each object member removed, and a member added to each
// object.
func variants(doc any, replacements []any) []any {
	out := []any{doc}
	var walk func(at []any)
	// at is the path from the root: member names and element indexes.
	walk = func(at []any) {
		v := get(doc, at)
		for _, r := range replacements {
			out = append(out, with(doc, at, func(any) any { return r }))
		}
		switch x := v.(type) {
		case map[string]any:
			for k := range x {
				out = append(out, with(doc, at, func(v any) any {
					delete(v.(map[string]any), k)
					return v
				}))
				walk(append(append([]any{}, at...), k))
			}
			out = append(out, with(doc, at, func(v any) any {
				v.(map[string]any)["unknown_field"] = "x"
				return v
			}))
		case []any:
			for i := range x {
				walk(append(append([]any{}, at...), i))
			}
		}
	}
	walk(nil)
	return out
}

func get(v any, at []any) any {
	for _, step := range at {
		switch s := step.(type) {
		case string:
			v = v.(map[string]any)[s]
		case int:
			v = v.([]any)[s]
		}
	}
	return v
}

// with is a copy of doc with the value at path at replaced by f's result
// (f is given a copy of it).
func with(doc any, at []any, f func(any) any) any {
	c := deepCopy(doc)
	if len(at) == 0 {
		return f(c)
	}
	parent := get(c, at[:len(at)-1])
	switch s := at[len(at)-1].(type) {
	case string:
		m := parent.(map[string]any)
		m[s] = f(m[s])
	case int:
		l := parent.([]any)
		l[s] = f(l[s])
	}
	return c
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
