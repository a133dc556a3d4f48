package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/leadflow/leadflow/internal/conversion"
)

// Reads for the request-reply endpoints: one statement each, against the
// committed state, without locks.

// Lead is a lead as leadflow holds it.
type Lead struct {
	OrgID, ID, Status, ProcessStage string
	// CustomerType is its qualification's, nil when it is not qualified.
	CustomerType *string
	// Conversion is what its qualification created or linked, nil when it
	// is not qualified.
	Conversion *conversion.Conversion
	// Fields are its fields with a value, by name (budget_amount a float64).
	Fields map[string]any
	Custom map[string]any

	DisqualifyReason                                          *string
	QualifiedAt, DisqualifiedAt, ReactivatedAt, UnqualifiedAt *time.Time
	CreatedAt, UpdatedAt                                      time.Time
}

// ErrNotFound means no such row in the org.
var ErrNotFound = errors.New("not found")

// Lead reads one lead of an org; ErrNotFound when the org has none by that id.
func (s *Store) Lead(ctx context.Context, orgID, leadID string) (*Lead, error) {
	l := &Lead{OrgID: orgID, ID: leadID, Fields: map[string]any{}}
	vals := make([]*string, len(leadColumns))
	var budget *float64
	var conv []byte
	dest := []any{&l.Status, &l.ProcessStage, &l.CustomerType, &conv, &budget, &l.Custom, &l.DisqualifyReason,
		&l.QualifiedAt, &l.DisqualifiedAt, &l.ReactivatedAt, &l.UnqualifiedAt, &l.CreatedAt, &l.UpdatedAt}
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT status, process_stage, customer_type, conversion, budget_amount::float8,
		custom, disqualify_reason, qualified_at, disqualified_at, reactivated_at, unqualified_at, created_at, updated_at, %s
		FROM leads WHERE org_id = $1 AND id = $2`, strings.Join(leadColumns, ", ")), orgID, leadID).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read lead %q of org %q: %w", leadID, orgID, err)
	}
	for i, c := range leadColumns {
		if vals[i] != nil {
			l.Fields[c] = *vals[i]
		}
	}
	if budget != nil {
		l.Fields["budget_amount"] = *budget
	}
	if conv != nil {
		l.Conversion = &conversion.Conversion{}
		if err := json.Unmarshal(conv, l.Conversion); err != nil {
			return nil, fmt.Errorf("read conversion of lead %q: %w", leadID, err)
		}
	}
	return l, nil
}

// FindDuplicates runs duplicate lookups (conversion.DuplicateProbes) in an
// org with the statements a qualification runs, but without its locks.
func (s *Store) FindDuplicates(ctx context.Context, orgID string, probes []conversion.Probe) ([]conversion.Match, error) {
	r := &request{p: &conversion.Parsed{Request: &conversion.Request{OrgID: orgID}}, draft: &conversion.Draft{Probes: probes}, preview: true}
	b := &pgx.Batch{}
	queueProbes(b, []*request{r})
	if b.Len() == 0 {
		return nil, nil
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("find duplicates: %w", err)
	}
	gatherProbes([]*request{r})
	return r.found, nil
}

// Recorded reports whether the request's idempotency key holds an outcome for
// this very request (same content): a redelivery of it would only replay.
func (s *Store) Recorded(ctx context.Context, p *conversion.Parsed) (bool, error) {
	if !p.Readable() {
		return false, nil
	}
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM idempotency_keys
		WHERE org_id = $1 AND key = $2 AND request_hash = $3 AND event IS NOT NULL)`, *p.OrgID, *p.Key, p.Hash).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("read idempotency record: %w", err)
	}
	return ok, nil
}
