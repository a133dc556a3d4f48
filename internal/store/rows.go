package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// rows collects the rows of one multi-row statement column by column, as
// arrays that the statement unnests: text arrays cast to their columns'
// types, and bytea arrays sent as they are. A batch writes each table in
// one statement, however many requests it holds.
type rows struct {
	*shape
	vals  [][]*string // per text column
	bins  [][][]byte  // per bytea column
	owner []int       // per row, the request it is written for (writes.own)
	// dry: the statement is queued without rows, in a rehearsal.
	dry bool
}

// shape is the columns of rows, shared by all rows of one spec, with the
// statements built from them once: every batch writes the same tables.
type shape struct {
	cols      []string // column names
	types     []string // SQL type each column is cast to
	selectSQL string   // see shapeOf
	inserts   sync.Map // table and suffix → INSERT statement
}

// shapes holds a *shape per spec (its columns joined by commas).
var shapes sync.Map

func newRows(spec ...string) *rows { return shapeOf(spec).empty(false) }

// empty is rows of sh without a row.
func (sh *shape) empty(dry bool) *rows {
	return &rows{shape: sh, vals: make([][]*string, len(sh.cols)), bins: make([][][]byte, len(sh.cols)), dry: dry}
}

// shapeOf returns the shape of spec, "name type" per column. Its selectSQL
// is `SELECT <casts> FROM unnest($1::text[], ...) WITH ORDINALITY`, which
// yields the rows in the order they were added.
func shapeOf(spec []string) *shape {
	key := strings.Join(spec, ",")
	if sh, ok := shapes.Load(key); ok {
		return sh.(*shape)
	}
	sh := &shape{}
	params := make([]string, len(spec))
	names := make([]string, len(spec))
	casts := make([]string, len(spec))
	for i, s := range spec {
		name, typ, _ := strings.Cut(s, " ")
		sh.cols = append(sh.cols, name)
		sh.types = append(sh.types, typ)
		names[i] = "c" + strconv.Itoa(i)
		if typ == "bytea" {
			params[i] = fmt.Sprintf("$%d::bytea[]", i+1)
			casts[i] = fmt.Sprintf("u.c%d", i)
			continue
		}
		params[i] = fmt.Sprintf("$%d::text[]", i+1)
		casts[i] = fmt.Sprintf("u.c%d::%s", i, typ)
	}
	sh.selectSQL = fmt.Sprintf("SELECT %s FROM unnest(%s) WITH ORDINALITY AS u(%s, n) ORDER BY u.n",
		strings.Join(casts, ", "), strings.Join(params, ", "), strings.Join(names, ", "))
	actual, _ := shapes.LoadOrStore(key, sh)
	return actual.(*shape)
}

// insertSQL is INSERT INTO table (cols) <selectSQL> suffix.
func (sh *shape) insertSQL(table, suffix string) string {
	key := table + " " + suffix
	if sql, ok := sh.inserts.Load(key); ok {
		return sql.(string)
	}
	sql := fmt.Sprintf("INSERT INTO %s (%s) %s %s", table, strings.Join(sh.cols, ", "), sh.selectSQL, suffix)
	sh.inserts.Store(key, sql)
	return sql
}

// add appends a row: one value per column, nil for NULL.
func (r *rows) add(vals ...any) {
	if len(vals) != len(r.cols) {
		panic(fmt.Sprintf("rows: %d values for %d columns", len(vals), len(r.cols)))
	}
	for i, v := range vals {
		if r.types[i] == "bytea" {
			b, _ := v.([]byte)
			r.bins[i] = append(r.bins[i], b)
			continue
		}
		r.vals[i] = append(r.vals[i], text(v))
	}
}

// filter is the rows whose owner keep admits; all of them when keep is nil.
func (r *rows) filter(keep func(owner int) bool) *rows {
	if keep == nil || !slices.ContainsFunc(r.owner, func(o int) bool { return !keep(o) }) {
		return r
	}
	out := r.empty(r.dry)
	for row, o := range r.owner {
		if !keep(o) {
			continue
		}
		for i := range r.cols {
			if r.types[i] == "bytea" {
				out.bins[i] = append(out.bins[i], r.bins[i][row])
			} else {
				out.vals[i] = append(out.vals[i], r.vals[i][row])
			}
		}
		out.owner = append(out.owner, o)
	}
	return out
}

func (r *rows) len() int {
	if r.types[0] == "bytea" {
		return len(r.bins[0])
	}
	return len(r.vals[0])
}

// queueInsert queues INSERT INTO table (cols) <rows> <suffix>, unless empty.
func (r *rows) queueInsert(b *pgx.Batch, table, suffix string) {
	if r.len() == 0 && !r.dry {
		return
	}
	b.Queue(r.insertSQL(table, suffix), r.args()...)
}

// insert is the step that inserts the rows into table.
func (r *rows) insert(table, suffix string) step {
	return func(b *pgx.Batch, keep func(int) bool) { r.filter(keep).queueInsert(b, table, suffix) }
}

func (r *rows) args() []any {
	out := make([]any, len(r.cols))
	for i := range r.cols {
		if r.types[i] == "bytea" {
			out[i] = byteaArray(r.bins[i])
		} else {
			out[i] = textArray(r.vals[i])
		}
	}
	return out
}

// text renders a value as PostgreSQL reads it back through a cast.
func text(v any) *string {
	var s string
	switch x := v.(type) {
	case nil:
		return nil
	case *string:
		return x
	case string:
		s = x
	case *float64:
		if x == nil {
			return nil
		}
		s = strconv.FormatFloat(*x, 'f', -1, 64)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		s = strconv.Itoa(x)
	case *int64:
		if x == nil {
			return nil
		}
		s = strconv.FormatInt(*x, 10)
	case bool:
		s = strconv.FormatBool(x)
	case time.Time:
		s = x.UTC().Format(time.RFC3339Nano)
	case *time.Time:
		if x == nil {
			return nil
		}
		s = x.UTC().Format(time.RFC3339Nano)
	case []byte:
		if x == nil {
			return nil
		}
		s = string(x)
	case json.RawMessage:
		s = string(x)
	default:
		raw, err := json.Marshal(x)
		if err != nil {
			panic(fmt.Sprintf("rows: cannot render %T: %v", v, err))
		}
		s = string(raw)
	}
	return &s
}
