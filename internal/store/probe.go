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

// queueProbes queues the draft's duplicate lookups, one statement per record
// type; their matches land in r.found.
func (r *request) queueProbes(b *pgx.Batch) {
	for _, typ := range []string{conversion.RecordAccount, conversion.RecordContact} {
		var parts []string
		var probes []conversion.Probe
		args := []any{r.p.Request.OrgID}
		for _, p := range r.draft.Probes {
			if !p.Lookup || p.RecordType != typ {
				continue
			}
			pred, arg := predicate(p, len(args)+1)
			args = append(args, arg)
			parts = append(parts, fmt.Sprintf(`(SELECT %d, %s FROM %s WHERE org_id = $1 AND %s LIMIT %d)`,
				len(probes), selectList(typ, p.Column), tables[typ], pred, maxMatches))
			probes = append(probes, p)
		}
		if len(parts) == 0 {
			continue
		}
		var i int
		b.Queue(strings.Join(parts, " UNION ALL "), args...).Query(func(rows pgx.Rows) error {
			return scanRecords(rows, typ, func(e conversion.Existing, norm string) {
				r.found = append(r.found, conversion.Match{Probe: probes[i], Record: e, RecordValue: norm})
			}, &i)
		})
	}
}

// predicate is the indexed condition of a probe on its normalized column,
// with its value as parameter $n.
func predicate(p conversion.Probe, n int) (string, string) {
	col := p.Column + "_norm"
	short := utf8.RuneCountInString(p.LeadValue) < p.Rule.N
	switch {
	case p.Rule.Match == conversion.MatchFirstN && !short:
		return fmt.Sprintf("%s LIKE $%d", col, n), escapeLike(p.Key) + "%"
	case p.Rule.Match == conversion.MatchLastN && !short:
		return fmt.Sprintf("reverse(%s) LIKE $%d", col, n), escapeLike(reverse(p.Key)) + "%"
	}
	return fmt.Sprintf("%s = $%d", col, n), p.LeadValue
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
