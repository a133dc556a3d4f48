package faults

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReportKeepsTheProse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "reliability.md")
	rows := []Row{{ID: 1, Name: "baseline", Requests: 10, Faults: "none", Result: "pass", Notes: []string{"a | b"}},
		{ID: 9, Name: "later", Lost: -1, Duplicated: -1, Redeliveries: -1, Dead: -1, Result: "pending"}}
	if err := WriteReport(path, "first", rows); err != nil {
		t.Fatal(err)
	}
	doc, _ := os.ReadFile(path)
	edited := strings.Replace(string(doc), "# leadflow reliability\n", "# leadflow reliability\n\nprose before\n", 1) + "\nprose after\n"
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteReport(path, "second", rows[:1]); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	got := string(raw)
	for _, want := range []string{"prose before", "prose after", "second", `a \| b`, "| 1 | baseline | 10 | none |"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"first", "| 9 |"} {
		if strings.Contains(got, gone) {
			t.Errorf("report still holds %q:\n%s", gone, got)
		}
	}
}
