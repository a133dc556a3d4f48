package store

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// rows collects the rows of one multi-row statement column by column, as
// text arrays that the statement unnests and casts: a batch writes each table
// in one statement, however many requests it holds.
type rows struct {
	cols  []string // column names
	types []string // SQL type each text value is cast to
	vals  [][]*string
}

func newRows(spec ...string) *rows {
	r := &rows{}
	for _, s := range spec {
		name, typ, _ := strings.Cut(s, " ")
		r.cols = append(r.cols, name)
		r.types = append(r.types, typ)
	}
	r.vals = make([][]*string, len(r.cols))
	return r
}

// add appends a row: one value per column, nil for NULL.
func (r *rows) add(vals ...any) {
	if len(vals) != len(r.cols) {
		panic(fmt.Sprintf("rows: %d values for %d columns", len(vals), len(r.cols)))
	}
	for i, v := range vals {
		if b, ok := v.([]byte); ok && r.types[i] == "bytea" {
			// Hex, which the text-to-bytea cast reads byte for byte.
			v = `\x` + hex.EncodeToString(b)
		}
		r.vals[i] = append(r.vals[i], text(v))
	}
}

func (r *rows) len() int { return len(r.vals[0]) }

// selectSQL is `SELECT <casts> FROM unnest($1::text[], ...) WITH ORDINALITY`,
// in the order the rows were added.
func (r *rows) selectSQL() string {
	params := make([]string, len(r.cols))
	names := make([]string, len(r.cols))
	casts := make([]string, len(r.cols))
	for i, c := range r.cols {
		params[i] = fmt.Sprintf("$%d::text[]", i+1)
		names[i] = "c" + strconv.Itoa(i)
		casts[i] = fmt.Sprintf("u.c%d::%s", i, r.types[i])
		_ = c
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

func (r *rows) args() []any {
	out := make([]any, len(r.vals))
	for i, v := range r.vals {
		out[i] = v
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
