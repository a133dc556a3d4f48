package conversion

import "fmt"

// Rejection codes: the stable, machine-readable reason a request was refused.
const (
	CodeInvalidRequest         = "invalid_request"
	CodeForbidden              = "forbidden"
	CodeNotFound               = "not_found"
	CodeIdempotencyKeyReused   = "idempotency_key_reused"
	CodeSelectionRequired      = "selection_required"
	CodeCompanyRequired        = "company_required"
	CodeCustomerRequired       = "customer_required"
	CodeMissingRequiredFields  = "missing_required_fields"
	CodeTooManyOpportunities   = "too_many_opportunities"
	CodeContactAccountMismatch = "contact_account_mismatch"
	CodeDuplicatesFound        = "duplicates_found"
	CodeAmbiguousDuplicates    = "ambiguous_duplicates"
	CodeLeadAlreadyQualified   = "lead_already_qualified"
	CodeLeadDisqualified       = "lead_disqualified"
	CodeLeadHasOpportunity     = "lead_has_opportunity"
	CodeLeadNotDisqualified    = "lead_not_disqualified"
	CodeLeadNotQualified       = "lead_not_qualified"
	CodeUndoConflict           = "undo_conflict"
	CodeUndoWindowExpired      = "undo_window_expired"
)

// Rejection is a permanent refusal of a request: it becomes a *.rejected event
// and the request is acknowledged.
type Rejection struct {
	Code    string
	Message string
	Details map[string]any
}

func (r *Rejection) Error() string { return r.Code + ": " + r.Message }

func reject(code string, details map[string]any, format string, args ...any) *Rejection {
	if details == nil {
		details = map[string]any{}
	}
	return &Rejection{Code: code, Message: fmt.Sprintf(format, args...), Details: details}
}

// FieldError is one invalid field of a request.
type FieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// InvalidRequest is the rejection of a malformed request.
func InvalidRequest(errs []FieldError) *Rejection {
	msg := "the request is invalid"
	if len(errs) > 0 {
		e := errs[0]
		at := e.Path
		if at == "" {
			at = "the request"
		}
		msg = fmt.Sprintf("%s %s", at, e.Message)
		if len(errs) > 1 {
			msg += fmt.Sprintf(" (and %d more errors)", len(errs)-1)
		}
	}
	return &Rejection{Code: CodeInvalidRequest, Message: msg, Details: map[string]any{"errors": errs}}
}

// KeyReused is the rejection of a request whose idempotency key was used
// before with another body.
func KeyReused(key string) *Rejection {
	return reject(CodeIdempotencyKeyReused, map[string]any{"idempotency_key": key},
		"idempotency key %q was already used for a different request; use a new key for a new request", key)
}
