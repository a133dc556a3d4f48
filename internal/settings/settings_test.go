package settings

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := `{"auto_create": {"account": false}, "max_opportunities": 2,
		"duplicate_rules": {"account": [{"name": "n5", "field": "name", "match": "first_n", "n": 5}]},
		"required_fields": {"contact": ["email", "custom.tier"]},
		"field_map": [{"from": "custom.budget_code", "to": "opportunity.custom.budget_code"}],
		"permissions": {"qualify": ["sales_manager"]}}`
	clean, err := Validate([]byte(ok))
	require.NoError(t, err)
	require.NotContains(t, string(clean), "\n")

	bad := map[string]string{
		"not JSON":          `{`,
		"unknown key":       `{"auto_create": {"lead": true}}`,
		"rule field":        `{"duplicate_rules": {"account": [{"name": "x", "field": "email", "match": "exact"}]}}`,
		"first_n without n": `{"duplicate_rules": {"contact": [{"name": "x", "field": "email", "match": "first_n"}]}}`,
		"required field":    `{"required_fields": {"account": ["nickname"]}}`,
		"field map target":  `{"field_map": [{"from": "topic", "to": "account.topic"}]}`,
		"negative max":      `{"max_opportunities": -1}`,
	}
	for name, doc := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Validate([]byte(doc))
			require.Error(t, err)
		})
	}
	_, err = Validate([]byte(`{"required_fields": {"account": ["nickname"]}}`))
	require.ErrorContains(t, err, "/required_fields/account/0")
}
