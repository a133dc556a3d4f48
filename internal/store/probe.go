package store

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
)

// maxMatches bounds the records one duplicate probe reports.
const maxMatches = 20

// probe runs a draft's duplicate lookups. Before looking, it takes a
// transaction-scoped advisory lock on each value it would create (in a fixed
// order, so that two conversions cannot deadlock on them): of two
// conversions racing to create the same company, the second waits until the
// first commits and then finds its account. A unique index could not say
// this, since duplicate rules are per org, may compare prefixes or suffixes,
// and create_new deliberately creates a duplicate.
func (t *tx) probe(ctx context.Context, orgID string, probes []conversion.Probe) ([]conversion.Match, error) {
	if len(probes) == 0 {
		return nil, nil
	}
	b := &pgx.Batch{}
	var found []conversion.Match
	last := ""
	for _, p := range probes {
		if p.Lock != last {
			b.Queue(lockSQL, p.Lock)
			last = p.Lock
		}
	}
	for _, p := range probes {
		if !p.Lookup {
			continue
		}
		pred, arg := predicate(p)
		sql := fmt.Sprintf(`SELECT %s FROM %s WHERE org_id = $1 AND %s LIMIT %d`,
			selectList(p.RecordType, p.Column), tables[p.RecordType], pred, maxMatches)
		b.Queue(sql, orgID, arg).Query(func(rows pgx.Rows) error {
			return scanRecords(rows, p.RecordType, func(e conversion.Existing, norm string) {
				found = append(found, conversion.Match{Probe: p, Record: e, RecordValue: norm})
			})
		})
	}
	if err := t.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("find duplicates: %w", err)
	}
	return found, nil
}

// predicate is the indexed condition of a probe on its normalized column.
func predicate(p conversion.Probe) (string, string) {
	col := p.Column + "_norm"
	short := utf8.RuneCountInString(p.LeadValue) < p.Rule.N
	switch {
	case p.Rule.Match == conversion.MatchFirstN && !short:
		return col + " LIKE $2", escapeLike(p.Key) + "%"
	case p.Rule.Match == conversion.MatchLastN && !short:
		return "reverse(" + col + ") LIKE $2", escapeLike(reverse(p.Key)) + "%"
	}
	return col + " = $2", p.LeadValue
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func reverse(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}
