package conversion

import (
	"bytes"
	"testing"

	"github.com/leadflow/leadflow/schemas"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// benchQualifyBody is a realistic qualify request of about 2 KB: a full lead
// with custom fields, notes and an attachment, and explicit choices.
const benchQualifyBody = `{
  "version": 1,
  "idempotency_key": "crm-7f3c2a10-qualify-0001",
  "org_id": "acme-industries",
  "actor": {"id": "u-1042", "roles": ["sales_agent", "marketing"]},
  "lead": {
    "id": "LEAD-2025-000417",
    "topic": "Replace legacy packaging line (50 units)",
    "first_name": "Ada", "last_name": "Lovelace", "company": "Contoso Manufacturing GmbH",
    "job_title": "Head of Operations", "email": "ada.lovelace@contoso-manufacturing.example",
    "business_phone": "+49 (30) 1234-5678", "mobile_phone": "+49 170 1234567",
    "website": "https://www.contoso-manufacturing.example/en/about-us",
    "street1": "Industriestraße 12", "street2": "Halle 4", "city": "Berlin",
    "state_province": "Berlin", "postal_code": "10115", "country": "DE",
    "description": "Met at the Hannover trade fair; evaluating three vendors, decision expected before the summer shutdown.",
    "source": "trade_show", "budget_amount": 250000, "purchase_timeframe": "this_quarter",
    "owner_id": "u-2001",
    "custom": {"budget_code": "CAPEX-2025-17", "segment": "enterprise", "employees": 1200, "nda_signed": true},
    "notes": [
      {"id": "n-1", "title": "First call", "body": "Current line runs at 60% efficiency; they need 24/7 support and spare parts within 48 hours.", "created_at": "2025-02-10T09:15:00Z"},
      {"id": "n-2", "title": "Site visit", "body": "Floor space is limited to 40 m². Power supply upgrade planned for April. Procurement involved from next meeting.", "created_at": "2025-02-18T14:30:00Z"},
      {"id": "n-3", "title": "Budget", "body": "Budget approved by the CFO, split over two fiscal years. Leasing is an option.", "created_at": "2025-02-25T11:00:00Z"}
    ],
    "attachments": [
      {"id": "a-1", "file_name": "requirements.pdf", "mime_type": "application/pdf", "size_bytes": 482133, "url": "https://files.example/leads/417/requirements.pdf"}
    ]
  },
  "customer_type": "business",
  "account": {"action": "create", "fields": {"custom": {"tier": "gold"}}},
  "contact": {"action": "create"},
  "opportunities": [
    {"action": "create", "fields": {"name": "Packaging line replacement", "estimated_value": 240000, "currency": "EUR", "close_date": "2025-06-30"}},
    {"action": "create", "fields": {"name": "Service contract", "estimated_value": 36000, "currency": "EUR"}}
  ],
  "on_duplicate": "reject",
  "owner_id": "u-2001"
}`

const benchSettings = `{
  "max_opportunities": 3,
  "required_fields": {"account": ["website"], "contact": ["email"], "opportunity": ["currency"]},
  "field_map": [
    {"from": "custom.budget_code", "to": "opportunity.custom.budget_code"},
    {"from": "custom.segment", "to": "account.custom.segment"},
    {"from": "source", "to": "contact.custom.lead_source"}
  ]
}`

func BenchmarkParse(b *testing.B) {
	body := []byte(benchQualifyBody)
	require.InDelta(b, 2048, len(body), 1024, "the benchmark request should be about 2 KB")
	require.Nil(b, Parse(SubjectQualify, body).Invalid)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		p := Parse(SubjectQualify, body)
		if p.Request == nil {
			b.Fatal(p.Invalid)
		}
	}
}

// The stages of Parse, apart: JSON to a generic value (what the schema
// validator reads), schema validation, the content hash, and the typed decode.
func BenchmarkParseStages(b *testing.B) {
	body := []byte(benchQualifyBody)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	require.NoError(b, err)
	b.Run("unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jsonschema.UnmarshalJSON(bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("validate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if errs, err := schemas.Validate(schemas.RequestPath(SubjectQualify), doc); err != nil || errs != nil {
				b.Fatal(err, errs)
			}
		}
	})
	b.Run("hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(contentHash(SubjectQualify, doc)) == 0 {
				b.Fatal("no hash")
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(SubjectQualify, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMap maps the lead onto an account, a contact and an opportunity
// with the org's field map and the request's overrides.
func BenchmarkMap(b *testing.B) {
	p := Parse(SubjectQualify, []byte(benchQualifyBody))
	require.Nil(b, p.Invalid)
	s := mustSettings(b, benchSettings)
	r := p.Request
	b.ReportAllocs()
	for b.Loop() {
		for _, typ := range []string{RecordAccount, RecordContact, RecordOpportunity} {
			if v := mapValues(typ, &r.Lead, s.FieldMap, nil); v.Fields == nil {
				b.Fatal("no fields")
			}
		}
	}
}

// BenchmarkDecide decides a qualification and plans it: checks, mapping,
// duplicate probes, resolution without matches, records and events.
func BenchmarkDecide(b *testing.B) {
	p := Parse(SubjectQualify, []byte(benchQualifyBody))
	require.Nil(b, p.Invalid)
	in := Input{
		Request:  p.Request,
		Settings: mustSettings(b, benchSettings),
		Existing: map[string]Existing{},
		Now:      testNow,
		NewID:    newTestIDs(),
	}
	b.ReportAllocs()
	for b.Loop() {
		d, _, rej := Decide(in)
		if rej != nil {
			b.Fatal(rej)
		}
		plan, rej := d.Resolve(nil)
		if rej != nil {
			b.Fatal(rej)
		}
		if len(plan.Events) != 5 {
			b.Fatalf("%d events", len(plan.Events))
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	cases := []struct {
		name string
		fn   func(string) string
		in   string
	}{
		{"name", NormalizeName, "  Contoso   Manufacturing\tGmbH – Industriestraße  "},
		{"email", NormalizeEmail, "  Ada.Lovelace@Contoso-Manufacturing.EXAMPLE "},
		{"phone", NormalizePhone, "+49 (30) 1234-5678 ext. 12"},
		{"domain", NormalizeDomain, "HTTPS://WWW.Contoso-Manufacturing.example:443/en/about-us?utm_source=fair#team"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if tc.fn(tc.in) == "" {
					b.Fatal("normalized to blank")
				}
			}
		})
	}
	b.Run("record", func(b *testing.B) {
		fields := map[string]any{
			"email": "Ada.Lovelace@Contoso.EXAMPLE", "business_phone": "+49 (30) 1234-5678",
			"mobile_phone": "+49 170 1234567", "first_name": "ADA", "last_name": "Lovelace",
		}
		b.ReportAllocs()
		for b.Loop() {
			if len(NormalizeRecord(RecordContact, fields)) != 5 {
				b.Fatal("wrong columns")
			}
		}
	})
}
