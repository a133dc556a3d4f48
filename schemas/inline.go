package schemas

import (
	"path"
	"strings"
)

// The validator evaluates every "$ref" in a validator of its own, with its
// own scope and bookkeeping: a request's text fields, each a reference to
// defs.schema.json's "text", cost as much again as the fields themselves.
// inlineRefs replaces, in the documents as compiled (the files are left as
// they are), each schema that is nothing but a "$ref" (with annotations) to
// a definition that holds no reference or identifier of its own, by that
// definition. Such a schema validates exactly what the definition does, so
// the results are the same; the reported errors too, as they name the
// instance's location and never the keyword's.

// annotations are the keywords that do not take part in validation.
var annotations = map[string]bool{
	"description": true, "title": true, "$comment": true, "examples": true,
	"default": true, "deprecated": true, "readOnly": true, "writeOnly": true,
}

// scoped are the keywords that make a definition depend on where it is
// written, or on other schemas: such a definition is never inlined.
var scoped = []string{"$ref", "$dynamicRef", "$recursiveRef", "$id", "$anchor", "$dynamicAnchor", "$recursiveAnchor", "$defs", "$schema"}

// inlineRefs rewrites docs (by path in this folder) in place until no
// reference is left that can be inlined, and returns how many it inlined.
func inlineRefs(docs map[string]any) int {
	total := 0
	for {
		n := 0
		for p, doc := range docs {
			if m, ok := doc.(map[string]any); ok {
				n += inlineIn(docs, p, m)
			}
		}
		if n == 0 {
			return total
		}
		total += n
	}
}

// inlineIn inlines the references it can among the subschemas of schema s,
// at any depth (s is in the document at p), and returns how many.
func inlineIn(docs map[string]any, p string, s map[string]any) int {
	n := 0
	eachSubschema(s, func(sub map[string]any, replace func(map[string]any)) {
		if def := inlinable(docs, p, sub); def != nil {
			replace(merged(sub, def))
			n++
			return
		}
		n += inlineIn(docs, p, sub)
	})
	return n
}

// Where a schema holds subschemas (draft 2020-12, and the earlier names).
var (
	schemaKeywords    = []string{"items", "additionalItems", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames", "unevaluatedProperties", "unevaluatedItems"}
	schemaMapKeywords = []string{"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
	schemaListKeyword = []string{"allOf", "anyOf", "oneOf", "prefixItems"}
)

// eachSubschema calls fn with each object subschema directly within s, and a
// function that replaces it there.
func eachSubschema(s map[string]any, fn func(sub map[string]any, replace func(map[string]any))) {
	for _, k := range schemaKeywords {
		switch v := s[k].(type) {
		case map[string]any:
			fn(v, func(r map[string]any) { s[k] = r })
		case []any: // items as an array, before draft 2020-12
			eachInList(v, fn)
		}
	}
	for _, k := range schemaMapKeywords {
		if m, ok := s[k].(map[string]any); ok {
			for name, v := range m {
				if sub, ok := v.(map[string]any); ok {
					fn(sub, func(r map[string]any) { m[name] = r })
				}
			}
		}
	}
	for _, k := range schemaListKeyword {
		if l, ok := s[k].([]any); ok {
			eachInList(l, fn)
		}
	}
}

func eachInList(l []any, fn func(sub map[string]any, replace func(map[string]any))) {
	for i, v := range l {
		if sub, ok := v.(map[string]any); ok {
			fn(sub, func(r map[string]any) { l[i] = r })
		}
	}
}

// inlinable returns the definition that schema m (in the document at p)
// can be replaced by, or nil.
func inlinable(docs map[string]any, p string, m map[string]any) map[string]any {
	ref, ok := m["$ref"].(string)
	if !ok {
		return nil
	}
	for k := range m {
		if k != "$ref" && !annotations[k] {
			return nil
		}
	}
	file, frag, ok := strings.Cut(ref, "#")
	name, isDef := strings.CutPrefix(frag, "/$defs/")
	if !ok || !isDef || name == "" || strings.ContainsAny(name, "/~%") || strings.Contains(file, ":") {
		return nil
	}
	target := p
	if file != "" {
		target = path.Join(path.Dir(p), file)
	}
	doc, _ := docs[target].(map[string]any)
	defs, _ := doc["$defs"].(map[string]any)
	def, _ := defs[name].(map[string]any)
	if def == nil || holdsScoped(def) {
		return nil
	}
	return def
}

// holdsScoped reports whether schema s, or one within it, holds a keyword
// of scoped.
func holdsScoped(s map[string]any) bool {
	for _, k := range scoped {
		if _, ok := s[k]; ok {
			return true
		}
	}
	found := false
	eachSubschema(s, func(sub map[string]any, _ func(map[string]any)) {
		found = found || holdsScoped(sub)
	})
	return found
}

// merged is a deep copy of def with ref's annotations in place of its own.
func merged(ref, def map[string]any) map[string]any {
	out := deepCopy(def).(map[string]any)
	for k, v := range ref {
		if k != "$ref" {
			out[k] = v
		}
	}
	return out
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}
