// Package schemas holds leadflow's wire contract as JSON Schemas (draft 2020-12)
// and validates documents against them.
//
// Every incoming request is validated here before anything else happens; the
// same schemas document the events and the per-org settings.
package schemas

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed *.json requests events service
var files embed.FS

// Files is the tree of schema documents, as embedded in the binary.
func Files() fs.FS { return files }

// BaseURL is the prefix of every schema's $id; the rest is its path in this folder.
const BaseURL = "https://leadflow.dev/schemas/"

// FieldError is one reason a document does not match its schema.
type FieldError struct {
	// Path is a JSON Pointer to the offending value ("" for the whole document).
	Path string `json:"path"`
	// Message says what is wrong with it.
	Message string `json:"message"`
}

var compiled = sync.OnceValues(compileAll)

// compileAll compiles every schema, with the references that can be
// inlined inlined (inline.go), which validates the same in less time.
func compileAll() (map[string]*jsonschema.Schema, error) {
	docs, err := readAll()
	if err != nil {
		return nil, err
	}
	inlineRefs(docs)
	return compile(docs)
}

// readAll reads every schema document, by its path in this folder.
func readAll() (map[string]any, error) {
	docs := map[string]any{}
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".schema.json") {
			return err
		}
		raw, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		docs[path] = doc
		return nil
	})
	return docs, err
}

// compile compiles docs, by their path in this folder.
func compile(docs map[string]any) (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	paths := make([]string, 0, len(docs))
	for p, doc := range docs {
		if err := c.AddResource(BaseURL+p, doc); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	out := make(map[string]*jsonschema.Schema, len(paths))
	for _, p := range paths {
		s, err := c.Compile(BaseURL + p)
		if err != nil {
			return nil, fmt.Errorf("compile %s: %w", p, err)
		}
		out[p] = s
	}
	return out, nil
}

// Schema returns the compiled schema at path (relative to this folder, e.g.
// "requests/lead.qualify.requested.schema.json").
func Schema(path string) (*jsonschema.Schema, error) {
	all, err := compiled()
	if err != nil {
		return nil, err
	}
	s, ok := all[path]
	if !ok {
		return nil, fmt.Errorf("no schema %q", path)
	}
	return s, nil
}

// RequestPath is the schema of the request published on subject.
func RequestPath(subject string) string { return "requests/" + subject + ".schema.json" }

// SettingsPath is the schema of an org's settings.
const SettingsPath = "org-settings.schema.json"

// Validate checks doc (as decoded by jsonschema.UnmarshalJSON, numbers as
// json.Number) against the schema at path. It returns nil when doc is valid and
// otherwise every failing field, sorted by path, then message.
func Validate(path string, doc any) ([]FieldError, error) {
	s, err := Schema(path)
	if err != nil {
		return nil, err
	}
	err = s.Validate(doc)
	if err == nil {
		return nil, nil
	}
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return []FieldError{{Path: "", Message: err.Error()}}, nil
	}
	var out []FieldError
	collect(ve, &out)
	sortErrors(out)
	return dedupe(out), nil
}

var printer = message.NewPrinter(language.English)

func collect(e *jsonschema.ValidationError, out *[]FieldError) {
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			collect(c, out)
		}
		return
	}
	at := pointer(e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		for _, name := range k.Missing {
			*out = append(*out, FieldError{Path: at + "/" + escape(name), Message: "is required"})
		}
	case *kind.AdditionalProperties:
		for _, name := range k.Properties {
			*out = append(*out, FieldError{Path: at + "/" + escape(name), Message: "is not a known field"})
		}
	case *kind.FalseSchema:
		*out = append(*out, FieldError{Path: at, Message: "is not allowed here"})
	default:
		*out = append(*out, FieldError{Path: at, Message: k.LocalizedString(printer)})
	}
}

// sortErrors orders errors by path, then message: the same for a document
// however the schema that found them is laid out.
func sortErrors(errs []FieldError) {
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Path != errs[j].Path {
			return errs[i].Path < errs[j].Path
		}
		return errs[i].Message < errs[j].Message
	})
}

func dedupe(in []FieldError) []FieldError {
	out := in[:0]
	for i, e := range in {
		if i > 0 && e == in[i-1] {
			continue
		}
		out = append(out, e)
	}
	return out
}

func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escape(t))
	}
	return b.String()
}

func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}
