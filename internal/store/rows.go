package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// rows collects the rows of one multi-row statement column by column, as
// arrays that the statement unnests: text arrays cast to their columns'
// types, and bytea arrays sent as they are. A batch writes each table in
// one statement, however many requests it holds.
type rows struct {
	cols  []string    // column names
	types []string    // SQL type each column is cast to
	vals  [][]*string // per text column
	bins  [][][]byte  // per bytea column
	owner []int       // per row, the request it is written for (writes.own)
}

func newRows(spec ...string) *rows {
	r := &rows{}
	for _, s := range spec {
		name, typ, _ := strings.Cut(s, " ")
		r.cols = append(r.cols, name)
		r.types = append(r.types, typ)
	}
	r.vals = make([][]*string, len(r.cols))
	r.bins = make([][][]byte, len(r.cols))
	return r
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
	if keep == nil {
		return r
	}
	out := &rows{cols: r.cols, types: r.types, vals: make([][]*string, len(r.cols)), bins: make([][][]byte, len(r.cols))}
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

// selectSQL is `SELECT <casts> FROM unnest($1::text[], ...) WITH ORDINALITY`,
// in the order the rows were added.
func (r *rows) selectSQL() string {
	params := make([]string, len(r.cols))
	names := make([]string, len(r.cols))
	casts := make([]string, len(r.cols))
	for i := range r.cols {
		names[i] = "c" + strconv.Itoa(i)
		if r.types[i] == "bytea" {
			params[i] = fmt.Sprintf("$%d::bytea[]", i+1)
			casts[i] = fmt.Sprintf("u.c%d", i)
			continue
		}
		params[i] = fmt.Sprintf("$%d::text[]", i+1)
		casts[i] = fmt.Sprintf("u.c%d::%s", i, r.types[i])
	}
	return fmt.Sprintf("SELECT %s FROM unnest(%s) WITH ORDINALITY AS u(%s, n) ORDER BY u.n",
		strings.Join(casts, ", "), strings.Join(params, ", "), strings.Join(names, ", "))
}

// queueInsert queues INSERT INTO table (cols) <rows> <suffix>, unless empty.
func (r *rows) queueInsert(b *pgx.Batch, table, suffix string) {
	if r.len() == 0 {
		return
	}
	b.Queue(fmt.Sprintf("INSERT INTO %s (%s) %s %s", table, strings.Join(r.cols, ", "), r.selectSQL(), suffix), r.args()...)
}

// insert is the step that inserts the rows into table.
func (r *rows) insert(table, suffix string) step {
	return func(b *pgx.Batch, keep func(int) bool) { r.filter(keep).queueInsert(b, table, suffix) }
}

func (r *rows) args() []any {
	out := make([]any, len(r.cols))
	for i := range r.cols {
		if r.types[i] == "bytea" {
			out[i] = r.bins[i]
		} else {
			// As a FlatArray, pgx encodes it without reflection.
			out[i] = pgtype.FlatArray[*string](r.vals[i])
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
