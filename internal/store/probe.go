package store

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
)

// maxMatches bounds the records one duplicate probe reports.
const maxMatches = 20

// probeTypes is the order in which a request's matches are reported.
var probeTypes = []string{conversion.RecordAccount, conversion.RecordContact}

// queueProbes queues the duplicate lookups of every request's draft. Exact
// lookups on one column are one statement for the whole batch, whatever its
// size: a join of the batch's keys (probeKey) with the column's key index,
// on a generic plan. Prefix
// and suffix lookups, which need their pattern as a constant to use an
// index (and so are planned with it, unlike every other statement), and
// blank lookups are a statement each. Matches land in each request's hits;
// gatherProbes moves them to found once the batch has run.
func queueProbes(b *pgx.Batch, reqs []*request) {
	generic := len(reqs) > 0 && !reqs[0].preview
	type target struct {
		r *request
		i int
	}
	type column struct{ typ, col string }
	exact := map[column][]target{}
	var columns []column
	var singles []func()
	for _, r := range reqs {
		if r.draft == nil {
			continue
		}
		r.hits = make([][]conversion.Match, len(r.draft.Probes))
		for i, p := range r.draft.Probes {
			if !p.Lookup {
				continue
			}
			if pred, args, ok := singlePredicate(r.p.Request.OrgID, p); ok {
				r, i := r, i
				singles = append(singles, func() {
					b.Queue(fmt.Sprintf(`SELECT %s FROM %s WHERE org_id = $1 AND %s LIMIT %d`,
						selectList(p.RecordType, p.Column), tables[p.RecordType], pred, maxMatches),
						append([]any{r.p.Request.OrgID}, args...)...).Query(func(rows pgx.Rows) error {
						return scanRecords(rows, p.RecordType, func(e conversion.Existing, norm string) {
							r.hits[i] = append(r.hits[i], conversion.Match{Probe: p, Record: e, RecordValue: norm})
						})
					})
				})
				continue
			}
			c := column{p.RecordType, p.Column}
			if _, ok := exact[c]; !ok {
				columns = append(columns, c)
			}
			exact[c] = append(exact[c], target{r, i})
		}
	}
	custom(b, generic, func() {
		for _, queue := range singles {
			queue()
		}
	})
	for _, c := range columns {
		targets := exact[c]
		ns := make([]int32, len(targets))
		keys := make([]string, len(targets))
		for n, t := range targets {
			ns[n], keys[n] = int32(n), probeKey(t.r.p.Request.OrgID, t.r.draft.Probes[t.i].LeadValue)
		}
		var n int32
		b.Queue(fmt.Sprintf(`SELECT q.n, m.* FROM unnest($1::int4[], $2::text[]) AS q(n, key)
			CROSS JOIN LATERAL (SELECT %s FROM %s WHERE left(%s, %d) = left(q.key, %d) COLLATE "C" AND %s = q.key COLLATE "C"
				AND %s_norm <> '' LIMIT %d) m`,
			selectList(c.typ, c.col), tables[c.typ], keyExpr(c.col), keyChars, keyChars, keyExpr(c.col), c.col, maxMatches),
			ns, keys).Query(func(rows pgx.Rows) error {
			return scanRecords(rows, c.typ, func(e conversion.Existing, norm string) {
				t := targets[n]
				p := t.r.draft.Probes[t.i]
				t.r.hits[t.i] = append(t.r.hits[t.i], conversion.Match{Probe: p, Record: e, RecordValue: norm})
			}, &n)
		})
	}
}

// gatherProbes moves each request's hits to its matches: accounts first,
// then contacts, each in the order of its draft's probes.
func gatherProbes(reqs []*request) {
	for _, r := range reqs {
		if r.draft == nil {
			continue
		}
		for _, typ := range probeTypes {
			for i, p := range r.draft.Probes {
				if p.RecordType == typ && i < len(r.hits) {
					r.found = append(r.found, r.hits[i]...)
				}
			}
		}
		r.hits = nil
	}
}

// singlePredicate is the condition on its normalized column of a probe that
// needs a statement of its own, with its parameters from $2 on: a prefix or
// suffix probe (its pattern a constant, and the column not blank, as the
// partial index has it), or a probe of a rule that matches blanks (which
// the lookup indexes leave out, so it walks the org's records until it has
// its matches). ok is false for an exact probe of a value.
func singlePredicate(org string, p conversion.Probe) (pred string, args []any, ok bool) {
	col := p.Column + "_norm"
	if p.LeadValue == "" {
		return col + " = ''", nil, true
	}
	if utf8.RuneCountInString(p.LeadValue) < p.Rule.N {
		return "", nil, false
	}
	switch p.Rule.Match {
	case conversion.MatchFirstN:
		// The key index (org and value) holds the value's prefixes in order.
		pred, args := startsWith(keyExpr(p.Column), probeKey(org, p.Key))
		return pred + " AND " + col + " <> ''", args, true
	case conversion.MatchLastN:
		pred, args := startsWith("reverse("+col+")", reverse(p.Key))
		return pred + " AND " + col + " <> ''", args, true
	}
	return "", nil, false
}

// keyChars is how many characters of a key (or a reversed value) the probe
// indexes hold: 512 characters of up to four bytes fit a btree entry.
const keyChars = 512

// startsWith is the condition that expr starts with prefix ($2 on), through
// the index on left(expr, keyChars): a LIKE on the indexed part, or, for a
// prefix as long as that part, its equality; and the LIKE on the whole.
func startsWith(expr, prefix string) (string, []any) {
	like := escapeLike(prefix) + "%"
	if r := []rune(prefix); len(r) >= keyChars {
		return fmt.Sprintf(`left(%s, %d) = $3 COLLATE "C" AND %s LIKE $2 COLLATE "C"`, expr, keyChars, expr),
			[]any{like, string(r[:keyChars])}
	}
	return fmt.Sprintf(`left(%s, %d) LIKE $2 COLLATE "C" AND %s LIKE $2 COLLATE "C"`, expr, keyChars, expr), []any{like}
}

// probeKey is the key of a normalized value in an org's probe index: the
// org's length in characters, the org, the value (keyExpr in SQL).
func probeKey(org, value string) string {
	return strconv.Itoa(utf8.RuneCountInString(org)) + ":" + org + value
}

// keyExpr is the key of a normalized column in SQL; its probe index holds
// its first keyChars characters (migrations 004 and 005).
func keyExpr(column string) string {
	return "(length(org_id)::text || ':' || org_id || " + column + "_norm)"
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}
