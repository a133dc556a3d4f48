package store

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
)

// maxMatches bounds the records one duplicate probe reports.
const maxMatches = 20

// queueProbes queues the draft's duplicate lookups; their matches land in r.found.
func (r *request) queueProbes(b *pgx.Batch) {
	orgID := r.p.Request.OrgID
	for _, p := range r.draft.Probes {
		if !p.Lookup {
			continue
		}
		pred, arg := predicate(p)
		sql := fmt.Sprintf(`SELECT %s FROM %s WHERE org_id = $1 AND %s LIMIT %d`,
			selectList(p.RecordType, p.Column), tables[p.RecordType], pred, maxMatches)
		b.Queue(sql, orgID, arg).Query(func(rows pgx.Rows) error {
			return scanRecords(rows, p.RecordType, func(e conversion.Existing, norm string) {
				r.found = append(r.found, conversion.Match{Probe: p, Record: e, RecordValue: norm})
			})
		})
	}
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
