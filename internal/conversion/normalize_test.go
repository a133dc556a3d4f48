package conversion

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalizeName(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		in   string
		want string
	}{
		{"lower case stays", "contoso", "contoso"},
		{"upper case folds", "CONTOSO LTD", "contoso ltd"},
		{"mixed case folds", "ConToSo", "contoso"},
		{"STRASSE folds to strasse", "STRASSE", "strasse"},
		{"sharp s folds to ss", "straße", "strasse"},
		{"capitalised sharp s folds to ss", "Straße", "strasse"},
		{"capital sharp s folds to ss", "GROẞE", "grosse"},
		{"STRASSE and straße compare equal", "Müller STRASSE", "müller strasse"},
		{"final sigma folds like sigma", "ΣΊΣΥΦΟΣ", "σίσυφοσ"},
		{"ligature folds", "ﬁne", "fine"},
		{"leading and trailing spaces trimmed", "  Contoso  ", "contoso"},
		{"inner spaces collapse", "Contoso    Ltd", "contoso ltd"},
		{"tabs and newlines collapse", "\tContoso\t\tLtd\n\r\nInc\n", "contoso ltd inc"},
		{"no-break space is white space", "Contoso\u00a0Ltd", "contoso ltd"},
		{"only white space", " \t\n ", ""},
		{"empty", "", ""},
		{"punctuation kept", "A.B. & Co.", "a.b. & co."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, NormalizeName(tc.in))
		})
	}
}

func TestNormalizeNameEquatesSpellings(t *testing.T) {
	t.Parallel()

	require.Equal(t, NormalizeName("STRASSE"), NormalizeName("straße"))
	require.Equal(t, NormalizeName(" Contoso\tLTD "), NormalizeName("contoso ltd"))
	require.NotEqual(t, NormalizeName("Contoso Ltd"), NormalizeName("ContosoLtd"))
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		in   string
		want string
	}{
		{"already normal", "ada@example.com", "ada@example.com"},
		{"lower-cased whole, local part included", "Ada.Lovelace@Example.COM", "ada.lovelace@example.com"},
		{"trimmed", "  ada@example.com\t\n", "ada@example.com"},
		{"plus tag kept", "Ada+Leads@Example.com", "ada+leads@example.com"},
		{"inner space kept", "ada @example.com", "ada @example.com"},
		{"empty", "", ""},
		{"blank", "   ", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, NormalizeEmail(tc.in))
		})
	}
}

func TestNormalizePhone(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		in   string
		want string
	}{
		{"digits only", "5550100", "5550100"},
		{"formatted international", "+1 (555) 010-0100", "+15550100100"},
		{"dots and slashes dropped", "555.010/0100", "5550100100"},
		{"leading plus after white space kept", "  +44 20 7946 0958 ", "+442079460958"},
		{"inner plus dropped", "1+555+0100", "15550100"},
		{"second leading plus dropped", "++49 30 1234", "+49301234"},
		{"trailing plus dropped", "5550100+", "5550100"},
		{"letters dropped", "tel: 555-0100 ext. 12", "555010012"},
		{"plus alone is blank", "+", ""},
		{"plus and punctuation is blank", " + - ", ""},
		{"no digits is blank", "n/a", ""},
		{"empty", "", ""},
		{"non-ASCII digits dropped", "５５５", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, NormalizePhone(tc.in))
		})
	}
}

func TestNormalizeDomain(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		in   string
		want string
	}{
		{"bare domain", "contoso.example", "contoso.example"},
		{"upper case", "CONTOSO.Example", "contoso.example"},
		{"http scheme", "http://contoso.example", "contoso.example"},
		{"https scheme upper case", "HTTPS://Contoso.Example", "contoso.example"},
		{"www dropped", "www.contoso.example", "contoso.example"},
		{"scheme and www dropped", "https://www.contoso.example", "contoso.example"},
		{"path dropped", "https://contoso.example/about/us", "contoso.example"},
		{"path without scheme dropped", "contoso.example/about", "contoso.example"},
		{"query dropped", "contoso.example?utm_source=x", "contoso.example"},
		{"fragment dropped", "contoso.example#team", "contoso.example"},
		{"port dropped", "https://contoso.example:8443/", "contoso.example"},
		{"port without scheme dropped", "contoso.example:8080", "contoso.example"},
		{"trailing dot dropped", "contoso.example.", "contoso.example"},
		{"trailing dot and port dropped", "http://www.contoso.example.:80/x", "contoso.example"},
		{"user info dropped", "https://user:secret@www.contoso.example/", "contoso.example"},
		{"trimmed", "  https://www.contoso.example/  ", "contoso.example"},
		{"everything at once", "HTTP://WWW.Contoso.Example.:8080/a/b?c=d#e", "contoso.example"},
		{"subdomain other than www kept", "https://shop.contoso.example", "shop.contoso.example"},
		{"www inside the name kept", "wwwcontoso.example", "wwwcontoso.example"},
		{"empty", "", ""},
		{"blank", "   ", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, NormalizeDomain(tc.in))
		})
	}
}

func TestNormalizeDomainBugs(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		in   string
		want string
		bug  string
	}{
		{
			name: "URL without scheme holding :// in its query",
			in:   "contoso.example/login?next=https://evil.example",
			want: "contoso.example",
			bug:  "NormalizeDomain strips up to the first :// anywhere, so a scheme-less website with a URL in its query or fragment normalizes to that URL's host",
		},
		{
			name: "URL without scheme holding :// in its fragment",
			in:   "Contoso.example/#go://other.example",
			want: "contoso.example",
			bug:  "NormalizeDomain strips up to the first :// anywhere, so a scheme-less website with a URL in its query or fragment normalizes to that URL's host",
		},
		{
			name: "protocol-relative URL",
			in:   "//www.contoso.example/about",
			want: "contoso.example",
			bug:  "NormalizeDomain returns \"\" for a protocol-relative website (//host/path), so it never matches a duplicate",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, NormalizeDomain(tc.in))
		})
	}
}

func TestNormalizeRecord(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name   string
		typ    string
		fields map[string]any
		want   Normalized
	}{
		{
			name: "account",
			typ:  RecordAccount,
			fields: map[string]any{
				"name": "  Contoso   LTD ", "website": "https://www.Contoso.example/x", "phone": "+1 (555) 010-0100",
				"city": "Springfield",
			},
			want: Normalized{"name": "contoso ltd", "website": "contoso.example", "phone": "+15550100100"},
		},
		{
			name: "contact",
			typ:  RecordContact,
			fields: map[string]any{
				"email": " Ada@Example.COM ", "business_phone": "555-0100", "mobile_phone": "+1 555 0199",
				"first_name": "ADA", "last_name": " Lovelace ", "job_title": "CTO",
			},
			want: Normalized{"email": "ada@example.com", "business_phone": "5550100", "mobile_phone": "+15550199",
				"first_name": "ada", "last_name": "lovelace"},
		},
		{
			name:   "absent and non-text values are blank",
			typ:    RecordAccount,
			fields: map[string]any{"name": 42.0},
			want:   Normalized{"name": "", "website": "", "phone": ""},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, NormalizeRecord(tc.typ, tc.fields))
		})
	}
}

func TestMatchKey(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		rule Rule
		in   string
		want string
	}{
		{"exact keeps the whole value", Rule{Match: MatchExact}, "contoso ltd", "contoso ltd"},
		{"exact ignores n", Rule{Match: MatchExact, N: 3}, "contoso ltd", "contoso ltd"},
		{"first_n", Rule{Match: MatchFirstN, N: 4}, "contoso ltd", "cont"},
		{"last_n", Rule{Match: MatchLastN, N: 3}, "contoso ltd", "ltd"},
		{"first_n counts runes, not bytes", Rule{Match: MatchFirstN, N: 3}, "müller", "mül"},
		{"last_n counts runes, not bytes", Rule{Match: MatchLastN, N: 4}, "straße", "raße"},
		{"first_n on CJK", Rule{Match: MatchFirstN, N: 2}, "東京都庁", "東京"},
		{"last_n on emoji", Rule{Match: MatchLastN, N: 1}, "shop🛒", "🛒"},
		{"first_n shorter than n keeps the value", Rule{Match: MatchFirstN, N: 10}, "acme", "acme"},
		{"last_n shorter than n keeps the value", Rule{Match: MatchLastN, N: 10}, "acme", "acme"},
		{"first_n exactly n", Rule{Match: MatchFirstN, N: 4}, "acme", "acme"},
		{"last_n exactly n", Rule{Match: MatchLastN, N: 4}, "acme", "acme"},
		{"last_n of a phone", Rule{Match: MatchLastN, N: 7}, "+15550100100", "0100100"},
		{"blank stays blank", Rule{Match: MatchFirstN, N: 3}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, matchKey(tc.rule, tc.in))
		})
	}
}
