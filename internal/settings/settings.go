// Package settings reads and replaces an org's conversion settings, validating
// them against schemas/org-settings.schema.json and the record fields they name.
package settings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/leadflow/leadflow/internal/conversion"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/leadflow/leadflow/schemas"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validate checks a settings document and returns it compacted. The error
// lists every problem with its JSON Pointer.
func Validate(raw []byte) ([]byte, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("settings are not valid JSON: %w", err)
	}
	errs, err := schemas.Validate(schemas.SettingsPath, doc)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, e := range errs {
		problems = append(problems, fmt.Sprintf("%s: %s", e.Path, e.Message))
	}
	if len(problems) == 0 {
		s, err := conversion.ParseSettings(raw)
		if err != nil {
			return nil, err
		}
		problems = s.Check()
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid settings:\n  %s", strings.Join(problems, "\n  "))
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Command runs "settings get|put" with args.
func Command(ctx context.Context, st *store.Store, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: leadflow settings get --org ID | put --org ID --file F.json")
	}
	fs := flag.NewFlagSet("settings "+args[0], flag.ContinueOnError)
	org := fs.String("org", "", "the org's id")
	file := fs.String("file", "", "the settings file (put only; - for standard input)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *org == "" {
		return errors.New("--org is required")
	}
	switch args[0] {
	case "get":
		raw, err := st.Settings(ctx, *org)
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, raw, "", "  "); err != nil {
			return err
		}
		out.WriteByte('\n')
		_, err = stdout.Write(out.Bytes())
		return err
	case "put":
		if *file == "" {
			return errors.New("--file is required")
		}
		var raw []byte
		var err error
		if *file == "-" {
			raw, err = io.ReadAll(os.Stdin)
		} else {
			raw, err = os.ReadFile(*file)
		}
		if err != nil {
			return err
		}
		clean, err := Validate(raw)
		if err != nil {
			return err
		}
		if err := st.PutSettings(ctx, *org, clean); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "settings of org %s replaced\n", *org)
		return nil
	}
	return fmt.Errorf("unknown settings command %q: use get or put", args[0])
}
