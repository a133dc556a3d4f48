// Package conversion holds leadflow's rules: what a request means, what a
// qualification creates, links or refuses, how lead fields map onto records and
// what counts as a duplicate. It does no I/O: the store loads the state a
// decision needs, calls in here, and writes the plan that comes back.
package conversion

import (
	"encoding/json"
	"time"
)

// Subjects on which requests arrive.
const (
	SubjectQualify    = "lead.qualify.requested"
	SubjectDisqualify = "lead.disqualify.requested"
	SubjectReactivate = "lead.reactivate.requested"
	SubjectUnqualify  = "lead.unqualify.requested"
)

// RejectedSubject is the subject of the rejection event for a request subject.
func RejectedSubject(requestSubject string) string {
	switch requestSubject {
	case SubjectQualify:
		return "lead.qualify.rejected"
	case SubjectDisqualify:
		return "lead.disqualify.rejected"
	case SubjectReactivate:
		return "lead.reactivate.rejected"
	case SubjectUnqualify:
		return "lead.unqualify.rejected"
	}
	return ""
}

// Actor is who asked.
type Actor struct {
	ID    string   `json:"id"`
	Roles []string `json:"roles"`
}

// Note is a lead note as the upstream system holds it.
type Note struct {
	ID        string     `json:"id"`
	Title     string     `json:"title"`
	Body      string     `json:"body"`
	CreatedAt *time.Time `json:"created_at"`
}

// Attachment is a lead attachment as the upstream system holds it.
type Attachment struct {
	ID        string `json:"id"`
	FileName  string `json:"file_name"`
	MimeType  string `json:"mime_type"`
	SizeBytes *int64 `json:"size_bytes"`
	URL       string `json:"url"`
}

// Lead is the lead a request carries. Empty strings mean "no value".
type Lead struct {
	ID                string         `json:"id"`
	Topic             string         `json:"topic"`
	FirstName         string         `json:"first_name"`
	LastName          string         `json:"last_name"`
	Company           string         `json:"company"`
	JobTitle          string         `json:"job_title"`
	Email             string         `json:"email"`
	BusinessPhone     string         `json:"business_phone"`
	MobilePhone       string         `json:"mobile_phone"`
	Website           string         `json:"website"`
	Street1           string         `json:"street1"`
	Street2           string         `json:"street2"`
	Street3           string         `json:"street3"`
	City              string         `json:"city"`
	StateProvince     string         `json:"state_province"`
	PostalCode        string         `json:"postal_code"`
	Country           string         `json:"country"`
	Description       string         `json:"description"`
	Source            string         `json:"source"`
	BudgetAmount      *float64       `json:"budget_amount"`
	PurchaseTimeframe string         `json:"purchase_timeframe"`
	OwnerID           string         `json:"owner_id"`
	Custom            map[string]any `json:"custom"`
	Notes             []Note         `json:"notes"`
	Attachments       []Attachment   `json:"attachments"`
}

// Field returns the value of the lead field name ("company", "custom.x"), or
// nil when the lead has none.
func (l *Lead) Field(name string) any {
	if c, ok := customName(name); ok {
		return l.Custom[c]
	}
	var s string
	switch name {
	case "topic":
		s = l.Topic
	case "first_name":
		s = l.FirstName
	case "last_name":
		s = l.LastName
	case "company":
		s = l.Company
	case "job_title":
		s = l.JobTitle
	case "email":
		s = l.Email
	case "business_phone":
		s = l.BusinessPhone
	case "mobile_phone":
		s = l.MobilePhone
	case "website":
		s = l.Website
	case "street1":
		s = l.Street1
	case "street2":
		s = l.Street2
	case "street3":
		s = l.Street3
	case "city":
		s = l.City
	case "state_province":
		s = l.StateProvince
	case "postal_code":
		s = l.PostalCode
	case "country":
		s = l.Country
	case "description":
		s = l.Description
	case "source":
		s = l.Source
	case "purchase_timeframe":
		s = l.PurchaseTimeframe
	case "owner_id":
		s = l.OwnerID
	case "budget_amount":
		if l.BudgetAmount != nil {
			return *l.BudgetAmount
		}
		return nil
	}
	if s == "" {
		return nil
	}
	return s
}

// Choice is the caller's choice for the account or the contact.
type Choice struct {
	// Action is "create", "existing" or "skip".
	Action string `json:"action"`
	// ID names the existing record when Action is "existing".
	ID string `json:"id"`
	// Fields override the mapped values of a created record.
	Fields map[string]any `json:"fields"`
}

// OpportunityChoice is one entry of a qualify request's opportunities.
type OpportunityChoice struct {
	Action string         `json:"action"`
	ID     string         `json:"id"`
	Fields map[string]any `json:"fields"`
}

// Request is a decoded, schema-valid request of any kind.
type Request struct {
	// Subject is the subject the request arrived on.
	Subject        string `json:"-"`
	Version        *int   `json:"version"`
	IdempotencyKey string `json:"idempotency_key"`
	OrgID          string `json:"org_id"`
	Actor          Actor  `json:"actor"`
	Lead           Lead   `json:"lead"`

	// Qualify only.
	CustomerType  string               `json:"customer_type"`
	Account       *Choice              `json:"account"`
	Contact       *Choice              `json:"contact"`
	Opportunities *[]OpportunityChoice `json:"opportunities"`
	OnDuplicate   string               `json:"on_duplicate"`
	OwnerID       string               `json:"owner_id"`
	Overwrite     bool                 `json:"overwrite"`

	// Disqualify only.
	Reason string `json:"reason"`
}

// Decode reads a schema-valid request body.
func Decode(subject string, body []byte) (*Request, error) {
	var r Request
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	r.Subject = subject
	r.setDefaults()
	return &r, nil
}

// setDefaults gives the fields a request may leave out their default.
func (r *Request) setDefaults() {
	if r.CustomerType == "" {
		r.CustomerType = CustomerBusiness
	}
	if r.OnDuplicate == "" {
		r.OnDuplicate = OnDuplicateReject
	}
}

// Customer types.
const (
	CustomerBusiness = "business"
	CustomerConsumer = "consumer"
)

// on_duplicate values.
const (
	OnDuplicateReject      = "reject"
	OnDuplicateUseExisting = "use_existing"
	OnDuplicateCreateNew   = "create_new"
)

// Actions of a choice.
const (
	ActionCreate   = "create"
	ActionExisting = "existing"
	ActionSkip     = "skip"
)
