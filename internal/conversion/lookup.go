package conversion

// The rules below answer questions about a request or a record without
// deciding anything: what a preview reports beside the decision, and what a
// duplicate lookup runs. They share their code with Decide and Resolve, so
// that the answers are the ones a qualification would act on.

// MissingRequiredFields lists, as "record_type.field" and in the order
// Decide would report them, the org's required fields that the records a
// qualify request would create lack. It looks at the request and the
// settings only, so it also answers for a request that would be refused for
// another reason first (a missing company, a record left to an org that does
// not create it automatically, ...). Records the request links or skips
// are not checked, as a qualification does not check them.
func MissingRequiredFields(r *Request, s Settings) []string {
	sel := selectRecords(r, &s)
	var out []string
	if sel.account.Action == ActionCreate && r.CustomerType != CustomerConsumer {
		out = append(out, requiredMissing(&s, RecordAccount, mapValues(RecordAccount, &r.Lead, s.FieldMap, sel.account.Fields))...)
	}
	if sel.contact.Action == ActionCreate {
		out = append(out, requiredMissing(&s, RecordContact, mapValues(RecordContact, &r.Lead, s.FieldMap, sel.contact.Fields))...)
	}
	for _, o := range sel.opps {
		if o.Action == ActionCreate {
			out = append(out, requiredMissing(&s, RecordOpportunity, mapValues(RecordOpportunity, &r.Lead, s.FieldMap, o.Fields))...)
		}
	}
	if out == nil {
		return []string{}
	}
	return unique(out)
}

// DuplicateProbes are the lookups that find the existing records of typ
// (account or contact) in an org that a new record with fields would
// duplicate under the org's rules: the lookups a qualification creating that
// record runs. fields holds the record's standard fields by name ("name",
// "website", "email", ...).
func DuplicateProbes(orgID, typ string, fields map[string]any, s Settings) []Probe {
	t := &Target{Type: typ, Outcome: OutcomeCreated, Values: Values{Fields: fields}}
	return probesFor(orgID, &s, true, t)
}

// MatchDetails groups the records probes found into one entry per record,
// each listing every rule it matched by: {record_type, id, rules: [{rule,
// field, lead_value, record_value}]}, sorted by record type and id. It is the
// shape of a duplicates_found rejection's details.matches.
func MatchDetails(found []Match) []map[string]any {
	return matchDetails(groupMatches(found))
}
