package conversion

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Settings are one org's conversion settings, as stored in org_settings and
// documented by schemas/org-settings.schema.json. The zero value of every
// optional part means "the default".
type Settings struct {
	AutoCreate       *AutoCreate     `json:"auto_create,omitempty"`
	MaxOpportunities *int            `json:"max_opportunities,omitempty"`
	DuplicateRules   *DuplicateRules `json:"duplicate_rules,omitempty"`
	RequiredFields   *RequiredFields `json:"required_fields,omitempty"`
	FieldMap         []FieldMapping  `json:"field_map,omitempty"`
	Permissions      *Permissions    `json:"permissions,omitempty"`
	// UndoWindow is how long after a qualification it may be undone, as a
	// duration ("24h", "90m", "1h30m"; "0s" turns undo off). Default 24h.
	UndoWindow string `json:"undo_window,omitempty"`
}

// AutoCreate says, per record type, whether a request that leaves the record
// out creates it (true, the default) or is refused with selection_required.
type AutoCreate struct {
	Account     *bool `json:"account,omitempty"`
	Contact     *bool `json:"contact,omitempty"`
	Opportunity *bool `json:"opportunity,omitempty"`
}

// DuplicateRules are the org's duplicate rules per record type. A nil list
// means the default rules; an empty one means no duplicate check.
type DuplicateRules struct {
	Account []Rule `json:"account"`
	Contact []Rule `json:"contact"`
}

// Rule compares one normalized field of a new record with existing records.
type Rule struct {
	Name string `json:"name"`
	// Field is the compared field: name, website or phone for accounts; email,
	// phone, business_phone, mobile_phone, first_name or last_name for contacts.
	Field string `json:"field"`
	// Match is exact, first_n or last_n.
	Match string `json:"match"`
	// N is the number of characters compared by first_n and last_n.
	N int `json:"n,omitempty"`
	// MatchBlanks makes a blank value match blank values (default false).
	MatchBlanks bool `json:"match_blanks,omitempty"`
}

// RequiredFields lists, per record type, the fields a created record must have.
type RequiredFields struct {
	Account     []string `json:"account,omitempty"`
	Contact     []string `json:"contact,omitempty"`
	Opportunity []string `json:"opportunity,omitempty"`
}

// FieldMapping copies a lead field onto a record field.
type FieldMapping struct {
	// From is a lead field ("description") or custom field ("custom.budget_code").
	From string `json:"from"`
	// To is "<record type>.<field>" or "<record type>.custom.<name>".
	To string `json:"to"`
}

// Permissions lists the roles allowed to do each thing.
type Permissions struct {
	Qualify           []string `json:"qualify,omitempty"`
	Disqualify        []string `json:"disqualify,omitempty"`
	Reactivate        []string `json:"reactivate,omitempty"`
	CreateAccount     []string `json:"create_account,omitempty"`
	CreateContact     []string `json:"create_contact,omitempty"`
	CreateOpportunity []string `json:"create_opportunity,omitempty"`
	Unqualify         []string `json:"unqualify,omitempty"`
}

// Match kinds of a rule.
const (
	MatchExact  = "exact"
	MatchFirstN = "first_n"
	MatchLastN  = "last_n"
)

// DefaultUndoWindow is undo_window when an org sets none.
const DefaultUndoWindow = 24 * time.Hour

// DefaultMaxOpportunities is max_opportunities when an org sets none.
const DefaultMaxOpportunities = 5

// DefaultRoles may do everything when an org sets no permissions.
var DefaultRoles = []string{"sales_agent", "sales_manager"}

// DefaultAccountRules and DefaultContactRules apply when an org sets none.
var (
	DefaultAccountRules = []Rule{
		{Name: "account_name", Field: "name", Match: MatchExact},
		{Name: "account_website", Field: "website", Match: MatchExact},
	}
	DefaultContactRules = []Rule{
		{Name: "contact_email", Field: "email", Match: MatchExact},
		{Name: "contact_phone", Field: "phone", Match: MatchExact},
	}
)

// ParseSettings reads stored settings; empty input means all defaults.
func ParseSettings(raw []byte) (Settings, error) {
	var s Settings
	if len(raw) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("parse org settings: %w", err)
	}
	if _, err := s.undoWindow(); err != nil {
		return s, fmt.Errorf("parse org settings: %w", err)
	}
	return s, nil
}

// Check reports what the schema cannot: field names that do not exist on the
// record type they name. Each problem is a path and a message.
func (s *Settings) Check() []string {
	var problems []string
	if s.DuplicateRules != nil {
		for i, r := range s.DuplicateRules.Account {
			problems = append(problems, checkRule("account", i, r)...)
		}
		for i, r := range s.DuplicateRules.Contact {
			problems = append(problems, checkRule("contact", i, r)...)
		}
	}
	if s.RequiredFields != nil {
		for typ, list := range map[string][]string{"account": s.RequiredFields.Account, "contact": s.RequiredFields.Contact, "opportunity": s.RequiredFields.Opportunity} {
			for i, f := range list {
				if !isRecordField(typ, f) {
					problems = append(problems, fmt.Sprintf("/required_fields/%s/%d: %q is not a %s field", typ, i, f, typ))
				}
			}
		}
	}
	if _, err := s.undoWindow(); err != nil {
		problems = append(problems, "/undo_window: "+err.Error())
	}
	for i, m := range s.FieldMap {
		if _, ok := customName(m.From); !ok && !slices.Contains(leadFields, m.From) {
			problems = append(problems, fmt.Sprintf("/field_map/%d/from: %q is not a lead field", i, m.From))
		}
		typ, field, _ := strings.Cut(m.To, ".")
		if !isRecordField(typ, field) {
			problems = append(problems, fmt.Sprintf("/field_map/%d/to: %q is not a record field", i, m.To))
		}
	}
	slices.Sort(problems)
	return problems
}

func checkRule(typ string, i int, r Rule) []string {
	var p []string
	if !slices.Contains(ruleFields[typ], r.Field) {
		p = append(p, fmt.Sprintf("/duplicate_rules/%s/%d/field: %q is not one of %s", typ, i, r.Field, strings.Join(ruleFields[typ], ", ")))
	}
	if r.Match != MatchExact && r.N < 1 {
		p = append(p, fmt.Sprintf("/duplicate_rules/%s/%d/n: %s needs n ≥ 1", typ, i, r.Match))
	}
	return p
}

func (s *Settings) autoCreate(typ string) bool {
	if s.AutoCreate == nil {
		return true
	}
	var v *bool
	switch typ {
	case RecordAccount:
		v = s.AutoCreate.Account
	case RecordContact:
		v = s.AutoCreate.Contact
	case RecordOpportunity:
		v = s.AutoCreate.Opportunity
	}
	return v == nil || *v
}

func (s *Settings) maxOpportunities() int {
	if s.MaxOpportunities == nil {
		return DefaultMaxOpportunities
	}
	return *s.MaxOpportunities
}

// Rules returns the duplicate rules in force for a record type.
func (s *Settings) Rules(typ string) []Rule {
	if s.DuplicateRules != nil {
		switch {
		case typ == RecordAccount && s.DuplicateRules.Account != nil:
			return s.DuplicateRules.Account
		case typ == RecordContact && s.DuplicateRules.Contact != nil:
			return s.DuplicateRules.Contact
		}
	}
	if typ == RecordAccount {
		return DefaultAccountRules
	}
	return DefaultContactRules
}

func (s *Settings) required(typ string) []string {
	if s.RequiredFields == nil {
		return nil
	}
	switch typ {
	case RecordAccount:
		return s.RequiredFields.Account
	case RecordContact:
		return s.RequiredFields.Contact
	default:
		return s.RequiredFields.Opportunity
	}
}

// undoWindow is the undo window in force.
func (s *Settings) undoWindow() (time.Duration, error) {
	if s.UndoWindow == "" {
		return DefaultUndoWindow, nil
	}
	d, err := time.ParseDuration(s.UndoWindow)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("undo_window %q is not a duration such as \"24h\" or \"90m\"", s.UndoWindow)
	}
	return d, nil
}

// Allowed reports whether an actor with roles may do action: "qualify",
// "disqualify", "reactivate", "unqualify", "create_account",
// "create_contact" or "create_opportunity".
func (s Settings) Allowed(action string, roles []string) bool { return s.allowed(action, roles) }

// MayRead reports whether an actor with roles may read the org's leads and
// records: any role that may qualify, disqualify or reactivate may.
func (s Settings) MayRead(roles []string) bool {
	return s.allowed("qualify", roles) || s.allowed("disqualify", roles) || s.allowed("reactivate", roles)
}

// allowed reports whether one of roles may do action.
func (s *Settings) allowed(action string, roles []string) bool {
	allowed := DefaultRoles
	if p := s.Permissions; p != nil {
		var list []string
		switch action {
		case "qualify":
			list = p.Qualify
		case "disqualify":
			list = p.Disqualify
		case "reactivate":
			list = p.Reactivate
		case "create_account":
			list = p.CreateAccount
		case "create_contact":
			list = p.CreateContact
		case "create_opportunity":
			list = p.CreateOpportunity
		case "unqualify":
			list = p.Unqualify
		}
		if list != nil {
			allowed = list
		}
	}
	for _, r := range roles {
		if slices.Contains(allowed, r) {
			return true
		}
	}
	return false
}
