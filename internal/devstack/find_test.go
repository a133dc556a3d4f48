package devstack

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func fakeBinaries(t *testing.T, dir string, names ...string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, n := range names {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755))
	}
}

func TestFindBinaries(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	onPath := filepath.Join(root, "path")
	fakeBinaries(t, onPath, "initdb") // no pg_ctl beside it
	fakeBinaries(t, filepath.Join(root, "lib", "9.6", "bin"), "initdb", "pg_ctl")
	fakeBinaries(t, filepath.Join(root, "lib", "15", "bin"), "initdb", "pg_ctl")
	fakeBinaries(t, filepath.Join(root, "lib", "16", "bin"), "initdb") // incomplete
	fakeBinaries(t, filepath.Join(root, "local"), "initdb", "pg_ctl")
	globs := []string{filepath.Join(root, "lib", "*", "bin"), filepath.Join(root, "local")}

	dir, err := findBinaries(onPath, globs)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(root, "lib", "15", "bin"), dir, "the newest complete version")

	fakeBinaries(t, onPath, "pg_ctl")
	dir, err = findBinaries("/nonexistent"+string(os.PathListSeparator)+onPath, globs)
	require.NoError(t, err)
	require.Equal(t, onPath, dir, "PATH comes first")

	_, err = findBinaries("", []string{filepath.Join(root, "none", "*")})
	require.ErrorIs(t, err, ErrNoPostgres)
	require.ErrorContains(t, err, "install the Debian package postgresql")
}

func TestNATSPortTakenMovesOn(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	p, err := natsPort(taken)
	require.NoError(t, err)
	require.Greater(t, p, taken)
	require.True(t, free(p), fmt.Sprint(p))
}

func TestCanEnter(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	private := filepath.Join(root, "private", "data")
	require.NoError(t, os.MkdirAll(private, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(private), 0o700))
	require.NoError(t, os.Chmod(root, 0o755))
	const stranger = 54321
	err := canEnter(private, stranger, []uint32{stranger})
	require.ErrorContains(t, err, filepath.Dir(private)+" has mode 0700")
	require.NoError(t, os.Chmod(filepath.Dir(private), 0o711))
	// t.TempDir's parent is private too; its own folders are now open.
	err = canEnter(private, stranger, []uint32{stranger})
	if err != nil {
		require.NotContains(t, err.Error(), root+"/")
	}
}
