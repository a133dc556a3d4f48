package store

import (
	"fmt"
	"slices"
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
// size: a join of the values with the column's index, planned once. Prefix
// and suffix lookups, which need their pattern as a constant to use an
// index, are a statement each. Matches land in each request's hits;
// gatherProbes moves them to found once the batch has run.
func queueProbes(b *pgx.Batch, reqs []*request) {
	type target struct {
		r *request
		i int
	}
	type column struct{ typ, col string }
	exact := map[column][]target{}
	var columns []column
	for _, r := range reqs {
		if r.draft == nil {
			continue
		}
		r.hits = make([][]conversion.Match, len(r.draft.Probes))
		for i, p := range r.draft.Probes {
			if !p.Lookup {
				continue
			}
			if pred, arg, ok := patternPredicate(p); ok {
				r, i := r, i
				b.Queue(fmt.Sprintf(`SELECT %s FROM %s WHERE org_id = $1 AND %s LIMIT %d`,
					selectList(p.RecordType, p.Column), tables[p.RecordType], pred, maxMatches),
					r.p.Request.OrgID, arg).Query(func(rows pgx.Rows) error {
					return scanRecords(rows, p.RecordType, func(e conversion.Existing, norm string) {
						r.hits[i] = append(r.hits[i], conversion.Match{Probe: p, Record: e, RecordValue: norm})
					})
				})
				continue
			}
			if p.LeadValue == "" {
				// A rule that matches blanks: the lookup indexes leave
				// blanks out, so this one walks the org's records until it
				// has its matches.
				r, i := r, i
				b.Queue(fmt.Sprintf(`SELECT %s FROM %s WHERE org_id = $1 AND %s_norm = '' LIMIT %d`,
					selectList(p.RecordType, p.Column), tables[p.RecordType], p.Column, maxMatches),
					r.p.Request.OrgID).Query(func(rows pgx.Rows) error {
					return scanRecords(rows, p.RecordType, func(e conversion.Existing, norm string) {
						r.hits[i] = append(r.hits[i], conversion.Match{Probe: p, Record: e, RecordValue: norm})
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
	for _, c := range columns {
		targets := exact[c]
		ns := make([]int32, len(targets))
		orgs := make([]string, len(targets))
		vals := make([]string, len(targets))
		for n, t := range targets {
			ns[n], orgs[n], vals[n] = int32(n), t.r.p.Request.OrgID, t.r.draft.Probes[t.i].LeadValue
		}
		var n int32
		b.Queue(fmt.Sprintf(`SELECT q.n, m.* FROM unnest($1::int4[], $2::text[], $3::text[]) AS q(n, org_id, value)
			CROSS JOIN LATERAL (SELECT %s FROM %s WHERE %s_norm = q.value AND %s_norm <> '' AND org_id = q.org_id LIMIT %d) m`,
			selectList(c.typ, c.col), tables[c.typ], c.col, c.col, maxMatches), ns, orgs, vals).Query(func(rows pgx.Rows) error {
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

// patternPredicate is the indexed condition of a prefix or suffix probe on
// its normalized column, with its pattern as $2 (and the column not blank,
// as the partial index has it); ok is false for a probe that compares whole
// values (exact rules, and values shorter than the rule's n).
func patternPredicate(p conversion.Probe) (pred, arg string, ok bool) {
	col := p.Column + "_norm"
	if utf8.RuneCountInString(p.LeadValue) < p.Rule.N {
		return "", "", false
	}
	switch p.Rule.Match {
	case conversion.MatchFirstN:
		return col + " LIKE $2 AND " + col + " <> ''", escapeLike(p.Key) + "%", true
	case conversion.MatchLastN:
		return "reverse(" + col + ") LIKE $2 AND " + col + " <> ''", escapeLike(reverse(p.Key)) + "%", true
	}
	return "", "", false
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}
