package main

import (
	"context"
	"io"
	"os"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/importer"
	"github.com/rs/zerolog"
)

func init() {
	extra["import"] = command{
		usage: importer.Usage,
		run: func(ctx context.Context, cfg config.Config, _ zerolog.Logger, args []string, stdout io.Writer) error {
			return importer.Command(ctx, cfg, args, stdout, os.Stderr)
		},
	}
}
