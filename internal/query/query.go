// Package query is leadflow's request-reply door: the `leadflow` NATS
// service (nats.go's micro framework, so that $SRV.PING, $SRV.INFO and
// $SRV.STATS discover it), whose endpoints answer without writing anything:
// what a qualify request would do (leadflow.qualify.preview), a lead
// (leadflow.lead.get), and the records a new account or contact would
// duplicate (leadflow.duplicates.find). Every request is validated against
// its schema, checked against the org's permissions and answered within its
// org only; the decisions are conversion's, the reads the store's.
package query

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Name and Version identify the service in $SRV replies.
const (
	Name    = "leadflow"
	Version = "1.0.0"
)

// Endpoint subjects, before Config.Prefix.
const (
	SubjectPreview        = "leadflow.qualify.preview"
	SubjectLeadGet        = "leadflow.lead.get"
	SubjectDuplicatesFind = "leadflow.duplicates.find"
)

// Subjects are the service's endpoint subjects.
var Subjects = []string{SubjectPreview, SubjectLeadGet, SubjectDuplicatesFind}

// Error codes of an error reply (the Nats-Service-Error-Code header).
const (
	CodeInvalidRequest = conversion.CodeInvalidRequest
	CodeForbidden      = conversion.CodeForbidden
	CodeNotFound       = conversion.CodeNotFound
	// CodeUnavailable: leadflow could not answer now (the database did not);
	// the caller may ask again.
	CodeUnavailable = "unavailable"
)

// Config tunes the service.
type Config struct {
	// Prefix goes before every endpoint subject (LEADFLOW_SUBJECT_PREFIX);
	// default none. The $SRV subjects are NATS's and take no prefix.
	Prefix string
	// Timeout bounds the answer to one request; default 10s.
	Timeout time.Duration
}

// Server is the running service.
type Server struct {
	svc     micro.Service
	store   *store.Store
	log     zerolog.Logger
	timeout time.Duration
	// inflight is held (read) by every handler, so that Stop can wait for
	// the answers under way.
	inflight sync.RWMutex
}

// Start adds the service to nc. Instances on several connections (replicas)
// share each endpoint through micro's queue group.
func Start(nc *nats.Conn, st *store.Store, cfg Config, log zerolog.Logger) (*Server, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	s := &Server{store: st, log: log.With().Str("component", "query").Logger(), timeout: cfg.Timeout}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        Name,
		Version:     Version,
		Description: "leadflow's read-only lookups: preview a qualification, read a lead, find duplicates",
		ErrorHandler: func(_ micro.Service, err *micro.NATSError) {
			s.log.Warn().Str("subject", err.Subject).Msg(err.Description)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("add NATS service %s: %w", Name, err)
	}
	s.svc = svc
	endpoints := []struct {
		name, subject, request, reply string
		handle                        func(context.Context, []byte) (any, *Error)
	}{
		{"qualify_preview", SubjectPreview, "requests/lead.qualify.requested.schema.json", "service/qualify.preview.reply.schema.json", s.preview},
		{"lead_get", SubjectLeadGet, leadGetRequest, "service/lead.get.reply.schema.json", s.leadGet},
		{"duplicates_find", SubjectDuplicatesFind, duplicatesFindRequest, "service/duplicates.find.reply.schema.json", s.duplicatesFind},
	}
	for _, e := range endpoints {
		err := svc.AddEndpoint(e.name, s.handler(e.subject, e.handle), micro.WithEndpointSubject(cfg.Prefix+e.subject),
			micro.WithEndpointMetadata(map[string]string{
				"request_schema": schemas.BaseURL + e.request,
				"reply_schema":   schemas.BaseURL + e.reply,
				"error_schema":   schemas.BaseURL + "service/error.schema.json",
			}))
		if err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("add endpoint %s: %w", e.subject, err)
		}
	}
	// Once Start returns, the server has the subscriptions: a request sent
	// on another connection finds a responder.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("add NATS service %s: %w", Name, err)
	}
	return s, nil
}

// Stop stops taking requests and waits for the answers under way.
func (s *Server) Stop() error {
	err := s.svc.Stop()
	s.inflight.Lock()
	defer s.inflight.Unlock()
	return err
}

// Error is an error reply: its code and message go in micro's error headers,
// and the whole of it, as JSON, in the body (schemas/service/error.schema.json).
type Error struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func fromRejection(r *conversion.Rejection) *Error {
	details := r.Details
	if details == nil {
		details = map[string]any{}
	}
	return &Error{Code: r.Code, Message: r.Message, Details: details}
}

func forbidden(action string, a conversion.Actor) *Error {
	return &Error{Code: CodeForbidden, Message: fmt.Sprintf("actor %q has no role that may %s in this org", a.ID, action),
		Details: map[string]any{"action": action, "actor_id": a.ID, "roles": a.Roles}}
}

// handler answers one endpoint's requests with handle's reply or error.
func (s *Server) handler(subject string, handle func(context.Context, []byte) (any, *Error)) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		s.inflight.RLock()
		defer s.inflight.RUnlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		start := time.Now()
		reply, qerr := handle(ctx, req.Data())
		log := s.log.Debug()
		if qerr != nil {
			log = log.Str("code", qerr.Code)
			body, _ := json.Marshal(qerr)
			err := req.Error(qerr.Code, qerr.Message, body)
			if err != nil {
				s.log.Warn().Err(err).Str("subject", subject).Msg("error reply not sent")
			}
		} else if err := req.RespondJSON(reply); err != nil {
			s.log.Warn().Err(err).Str("subject", subject).Msg("reply not sent")
		}
		log.Str("subject", subject).Dur("took", time.Since(start)).Msg("request answered")
	})
}

// unavailable is the reply to a request the store could not answer.
func (s *Server) unavailable(subject string, err error) *Error {
	s.log.Warn().Str("error", store.Redact(err)).Str("subject", subject).Msg("request not answered")
	return &Error{Code: CodeUnavailable, Message: "leadflow could not answer now; ask again", Details: map[string]any{}}
}

// decode validates a request body against its schema and decodes it into v.
func decode(schema string, body []byte, v any) *Error {
	invalid := func(errs ...conversion.FieldError) *Error { return fromRejection(conversion.InvalidRequest(errs)) }
	if len(body) > conversion.MaxRequestBytes {
		return invalid(conversion.FieldError{Message: fmt.Sprintf("is %d bytes; a request may be at most %d bytes", len(body), conversion.MaxRequestBytes)})
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return invalid(conversion.FieldError{Message: "is not valid JSON"})
	}
	errs, err := schemas.Validate(schema, doc)
	if err != nil {
		return invalid(conversion.FieldError{Message: err.Error()})
	}
	if len(errs) > 0 {
		fe := make([]conversion.FieldError, len(errs))
		for i, e := range errs {
			fe[i] = conversion.FieldError(e)
		}
		return invalid(fe...)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return invalid(conversion.FieldError{Message: "cannot be decoded: " + err.Error()})
	}
	return nil
}

// settings reads an org's settings.
func (s *Server) settings(ctx context.Context, orgID string) (conversion.Settings, error) {
	raw, err := s.store.Settings(ctx, orgID)
	if err != nil {
		return conversion.Settings{}, err
	}
	return conversion.ParseSettings(raw)
}

// mayRead loads the org's settings and checks that the actor may read its
// leads and records: a role the org allows to qualify, disqualify or
// reactivate.
func (s *Server) mayRead(ctx context.Context, subject, orgID string, actor conversion.Actor) (conversion.Settings, *Error) {
	settings, err := s.settings(ctx, orgID)
	if err != nil {
		return settings, s.unavailable(subject, err)
	}
	if !settings.MayRead(actor.Roles) {
		return settings, forbidden("read leads", actor)
	}
	return settings, nil
}
