package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/leadflow/leadflow/internal/conversion"
)

// Formats of an import file.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// record is one row of an import file, before it becomes a request.
type record struct {
	// line is where the row starts in the file (1-based); it is the row's
	// number in reports, in the results and in its default idempotency key.
	line int
	// cells are a CSV row's values, in header order.
	cells []string
	// raw is a JSONL row's text.
	raw []byte
	// problem is set when the row could not even be read as a row.
	problem *conversion.FieldError
}

// rowReader reads the records of one file in order; next returns io.EOF after
// the last.
type rowReader interface {
	next() (record, error)
}

// leadFields are the lead's scalar fields that a CSV column may name.
var leadFields = []string{"id", "topic", "first_name", "last_name", "company", "job_title", "email",
	"business_phone", "mobile_phone", "website", "street1", "street2", "street3", "city", "state_province",
	"postal_code", "country", "description", "source", "budget_amount", "purchase_timeframe", "owner_id"}

type columnKind int

const (
	colLead columnKind = iota
	colNumber
	colCustom
	colKey
	colOrg
)

type column struct {
	kind columnKind
	// name is the lead field, or the custom field's name.
	name string
	// header is the column's name as the file spells it.
	header string
}

// csvRows reads a CSV file whose first row names the columns.
type csvRows struct {
	r    *csv.Reader
	cols []column
}

func newCSVRows(r io.Reader) (*csvRows, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty: it needs a header row naming the lead fields")
	}
	if err != nil {
		return nil, fmt.Errorf("read the header row: %w", err)
	}
	cols, err := parseHeader(header)
	if err != nil {
		return nil, err
	}
	return &csvRows{r: cr, cols: cols}, nil
}

// parseHeader maps header names onto request fields: a lead field, custom.x,
// idempotency_key (or key) and org_id.
func parseHeader(header []string) ([]column, error) {
	cols := make([]column, len(header))
	seen := map[string]int{}
	var unknown []string
	hasID := false
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a spreadsheet's byte-order mark
		}
		h = strings.TrimSpace(h)
		lower := strings.ToLower(h)
		var c column
		switch {
		case strings.HasPrefix(lower, "custom."):
			c = column{kind: colCustom, name: h[len("custom."):]}
		case lower == "idempotency_key" || lower == "key":
			c = column{kind: colKey, name: "idempotency_key"}
		case lower == "org_id":
			c = column{kind: colOrg, name: "org_id"}
		case lower == "budget_amount":
			c = column{kind: colNumber, name: lower}
		case slices.Contains(leadFields, lower):
			c = column{kind: colLead, name: lower}
			hasID = hasID || lower == "id"
		default:
			unknown = append(unknown, strconv.Quote(h))
			continue
		}
		c.header = h
		id := fmt.Sprint(c.kind, c.name)
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("columns %d and %d both name %s", j+1, i+1, c.name)
		}
		seen[id] = i
		cols[i] = c
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown column %s in the header row: columns name lead fields (%s), custom.<name>, idempotency_key (or key) or org_id",
			strings.Join(unknown, ", "), strings.Join(leadFields, ", "))
	}
	if !hasID {
		return nil, errors.New("the header row has no id column: every lead needs its upstream id")
	}
	return cols, nil
}

func (c *csvRows) next() (record, error) {
	cells, err := c.r.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// The reader goes on at the next line: one broken row is one bad row.
			return record{line: pe.StartLine, problem: &conversion.FieldError{Message: "is not valid CSV: " + pe.Err.Error()}}, nil
		}
		return record{}, err
	}
	line, _ := c.r.FieldPos(0)
	if len(cells) != len(c.cols) {
		return record{line: line, problem: &conversion.FieldError{
			Message: fmt.Sprintf("has %d cells; the header row has %d", len(cells), len(c.cols))}}, nil
	}
	return record{line: line, cells: slices.Clone(cells)}, nil
}

// jsonlRows reads a file of one JSON request per line; blank lines are skipped.
type jsonlRows struct {
	r    *bufio.Reader
	line int
	buf  []byte
}

func newJSONLRows(r io.Reader) *jsonlRows { return &jsonlRows{r: bufio.NewReaderSize(r, 64<<10)} }

func (j *jsonlRows) next() (record, error) {
	for {
		j.buf = j.buf[:0]
		size := 0
		var err error
		for {
			var chunk []byte
			chunk, err = j.r.ReadSlice('\n')
			size += len(chunk)
			// Past the limit the rest of the line is counted, not kept.
			if len(j.buf) <= conversion.MaxRequestBytes {
				j.buf = append(j.buf, chunk...)
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return record{}, err
		}
		if size == 0 && errors.Is(err, io.EOF) {
			return record{}, io.EOF
		}
		j.line++
		text := bytes.TrimSpace(j.buf)
		if len(text) == 0 && size <= conversion.MaxRequestBytes {
			if errors.Is(err, io.EOF) {
				return record{}, io.EOF
			}
			continue
		}
		if size > conversion.MaxRequestBytes+2 { // a line may end in \r\n
			return record{line: j.line, problem: &conversion.FieldError{
				Message: fmt.Sprintf("is %d bytes; a request may be at most %d bytes (256 KiB)", size, conversion.MaxRequestBytes)}}, nil
		}
		return record{line: j.line, raw: bytes.Clone(text)}, nil
	}
}

// builder turns records into qualify request bodies, as the flags say.
type builder struct {
	format string
	cols   []column
	opts   *Options
	// keyPrefix is "import-<first 16 hex digits of the file's SHA-256>-".
	keyPrefix string
}

// request is a row as a qualify request: its body, and the org and
// idempotency key it is tracked by.
type request struct {
	body     []byte
	org, key string
	// problems are what is wrong with the row before validation, each with
	// the JSON Pointer of the field it concerns.
	problems []conversion.FieldError
}

func (b *builder) defaultKey(line int) string { return b.keyPrefix + strconv.Itoa(line) }

func (b *builder) build(rec record) request {
	if rec.problem != nil {
		return request{problems: []conversion.FieldError{*rec.problem}}
	}
	if b.format == FormatJSONL {
		return b.buildJSON(rec)
	}
	return b.buildCSV(rec)
}

type actorDoc struct {
	ID    string   `json:"id"`
	Roles []string `json:"roles"`
}

type requestDoc struct {
	IdempotencyKey string         `json:"idempotency_key"`
	OrgID          string         `json:"org_id,omitempty"`
	Actor          actorDoc       `json:"actor"`
	Lead           map[string]any `json:"lead"`
	CustomerType   string         `json:"customer_type,omitempty"`
	OnDuplicate    string         `json:"on_duplicate,omitempty"`
}

func (b *builder) buildCSV(rec record) request {
	var r request
	lead := make(map[string]any, len(rec.cells))
	var custom map[string]any
	doc := requestDoc{OrgID: b.opts.OrgID, Actor: actorDoc{ID: b.opts.ActorID, Roles: b.opts.Roles},
		CustomerType: b.opts.CustomerType, OnDuplicate: b.opts.OnDuplicate, Lead: lead}
	for i, cell := range rec.cells {
		cell = strings.TrimSpace(cell)
		if cell == "" {
			continue
		}
		c := b.cols[i]
		switch c.kind {
		case colLead:
			lead[c.name] = cell
		case colNumber:
			f, err := strconv.ParseFloat(cell, 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				r.problems = append(r.problems, conversion.FieldError{Path: "/lead/" + c.name,
					Message: fmt.Sprintf("%q is not a number", cell)})
				continue
			}
			lead[c.name] = f
		case colCustom:
			if custom == nil {
				custom = map[string]any{}
				lead["custom"] = custom
			}
			custom[c.name] = cell
		case colKey:
			doc.IdempotencyKey = cell
		case colOrg:
			doc.OrgID = cell
		}
	}
	if doc.IdempotencyKey == "" {
		doc.IdempotencyKey = b.defaultKey(rec.line)
	}
	if doc.Actor.Roles == nil {
		doc.Actor.Roles = []string{}
	}
	body, err := json.Marshal(doc)
	if err != nil {
		r.problems = append(r.problems, conversion.FieldError{Message: "cannot be encoded: " + err.Error()})
		return r
	}
	r.body, r.org, r.key = body, doc.OrgID, doc.IdempotencyKey
	return r
}

// buildJSON takes a JSONL request as it is, filling in from the flags only
// what it leaves out: its idempotency key (the row's default key), org_id,
// actor, customer_type and on_duplicate.
func (b *builder) buildJSON(rec record) request {
	var head struct {
		Key          json.RawMessage `json:"idempotency_key"`
		Org          json.RawMessage `json:"org_id"`
		Actor        json.RawMessage `json:"actor"`
		CustomerType json.RawMessage `json:"customer_type"`
		OnDuplicate  json.RawMessage `json:"on_duplicate"`
	}
	if err := json.Unmarshal(rec.raw, &head); err != nil {
		// Validation says what is wrong with it.
		return request{body: rec.raw}
	}
	fill := map[string]any{}
	if head.Key == nil {
		fill["idempotency_key"] = b.defaultKey(rec.line)
	}
	if head.Org == nil && b.opts.OrgID != "" {
		fill["org_id"] = b.opts.OrgID
	}
	if head.Actor == nil && b.opts.ActorID != "" {
		roles := b.opts.Roles
		if roles == nil {
			roles = []string{}
		}
		fill["actor"] = actorDoc{ID: b.opts.ActorID, Roles: roles}
	}
	if head.CustomerType == nil && b.opts.CustomerType != "" {
		fill["customer_type"] = b.opts.CustomerType
	}
	if head.OnDuplicate == nil && b.opts.OnDuplicate != "" {
		fill["on_duplicate"] = b.opts.OnDuplicate
	}
	r := request{body: rec.raw}
	if len(fill) > 0 {
		var doc map[string]any
		d := json.NewDecoder(bytes.NewReader(rec.raw))
		d.UseNumber()
		if err := d.Decode(&doc); err != nil {
			return r
		}
		for k, v := range fill {
			doc[k] = v
		}
		body, err := json.Marshal(doc)
		if err != nil {
			return request{problems: []conversion.FieldError{{Message: "cannot be encoded: " + err.Error()}}}
		}
		r.body = body
	}
	var ids struct {
		Key any `json:"idempotency_key"`
		Org any `json:"org_id"`
	}
	if json.Unmarshal(r.body, &ids) == nil {
		r.key, _ = ids.Key.(string)
		r.org, _ = ids.Org.(string)
	}
	return r
}

// validate checks a built request exactly as leadflow's workers will, and
// returns every problem, sorted by path.
func validate(r request) []conversion.FieldError {
	if r.body == nil {
		return r.problems
	}
	p := conversion.Parse(conversion.SubjectQualify, r.body)
	if p.Invalid == nil {
		return r.problems
	}
	errs, _ := p.Invalid.Details["errors"].([]conversion.FieldError)
	out := slices.Clone(r.problems)
	for _, e := range errs {
		// The builder's own word on a field is the clearer one.
		if !slices.ContainsFunc(r.problems, func(p conversion.FieldError) bool { return p.Path == e.Path }) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b conversion.FieldError) int { return strings.Compare(a.Path, b.Path) })
	return out
}
