package conversion

import (
	"fmt"
	"strings"
	"testing"
)

func TestZZScratch(t *testing.T) {
	for _, s := range []string{"STRASSE", "straße", "Straße", "ẞ", "  Acme\t\n  Corp  ", "ΣΊΣΥΦΟΣ", "ﬁ"} {
		fmt.Printf("%q -> %q\n", s, NormalizeName(s))
	}
	for _, s := range []string{"https://example.com/?next=https://other.com", "HTTP://WWW.Example.COM.:8080/a?b#c", "user@www.x.com", "www.", "example.com."} {
		fmt.Printf("%q -> %q\n", s, NormalizeDomain(s))
	}
	base := `{"idempotency_key":"k1","org_id":"acme","actor":{"id":"u1","roles":["sales_agent"]},"lead":{"id":"L1"}`
	for _, b := range []string{
		base + `}`, `{`, `{} {}`, `null`, `[]`, base + `,"version":2}`, base + `,"version":1}`,
		strings.Replace(base, `"id":"L1"`, `"id":"L1","budget_amount":"10"`, 1) + `}`,
		strings.Replace(base, `"idempotency_key":"k1",`, ``, 1) + `}`,
		strings.Replace(base, `"id":"L1"`, `"email":"x"`, 1) + `}`,
		base + `,"customer_type":"alien"}`,
		base + `,"bogus":1}`,
		strings.Replace(base, `"id":"L1"`, `"id":"L1","bogus":1`, 1) + `}`,
		base + `,"account":{"action":"existing"}}`,
		base + `,"account":{"action":"create","id":"0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6"}}`,
		base + `,"contact":{"action":"skip","id":"0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6"}}`,
		strings.Replace(base, `"id":"L1"`, `"id":"L1","first_name":"a\u0000b"`, 1) + `}`,
		base + `,"opportunities":[{"action":"existing","id":"0190a5c4-7a2b-7c3d-8e4f-a1b2c3d4e5f6","fields":{"name":"x"}}]}`,
	} {
		p := Parse(SubjectQualify, []byte(b))
		if p.Invalid != nil {
			fmt.Printf("%s\n   -> %v %#v\n", b, p.Invalid.Message, p.Invalid.Details["errors"])
		} else {
			fmt.Printf("%s\n   -> OK\n", b)
		}
	}
	p := Parse(SubjectQualify, []byte("{\"org_id\":\"a\xff\"}"))
	fmt.Printf("%#v\n", p.Invalid)
}
