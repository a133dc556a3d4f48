package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/leadflow/leadflow/internal/store"
	"github.com/stretchr/testify/require"
)

func ptr(s string) *string { return &s }

var textArrays = map[string][]*string{
	"nil":            nil,
	"empty":          {},
	"one":            {ptr("a")},
	"null":           {nil},
	"empty string":   {ptr("")},
	"mixed":          {ptr("Contoso"), nil, ptr(""), ptr("Straße 12 – Halle 4"), nil, ptr(`{"a": [1, "\"x\""]}`)},
	"long":           {ptr(strings.Repeat("x", 70000)), ptr("y")},
	"nulls at start": {nil, nil, ptr("z")},
}

var byteaArrays = map[string][][]byte{
	"nil":   nil,
	"empty": {},
	"one":   {[]byte("payload")},
	"null":  {nil},
	"mixed": {{}, nil, {0, 1, 2, 0xff}, []byte(strings.Repeat("e", 5000))},
}

// TestArraysEncodeAsPgx: the store's column arrays are written byte for byte
// as pgx's own array codec writes the same values, after what is already in
// the buffer.
func TestArraysEncodeAsPgx(t *testing.T) {
	t.Parallel()
	ours := pgtype.NewMap()
	store.RegisterArrays(ours)
	theirs := pgtype.NewMap()
	prefix := []byte("earlier parameters")
	for name, a := range textArrays {
		want, err := theirs.Encode(1009, pgtype.BinaryFormatCode, pgtype.FlatArray[*string](a), append([]byte{}, prefix...))
		require.NoError(t, err, name)
		got, err := ours.Encode(1009, pgtype.BinaryFormatCode, store.TextArray(a), append([]byte{}, prefix...))
		require.NoError(t, err, name)
		require.Equal(t, want, got, "text[] %s", name)
	}
	for name, a := range byteaArrays {
		want, err := theirs.Encode(1001, pgtype.BinaryFormatCode, a, append([]byte{}, prefix...))
		require.NoError(t, err, name)
		got, err := ours.Encode(1001, pgtype.BinaryFormatCode, store.ByteaArray(a), append([]byte{}, prefix...))
		require.NoError(t, err, name)
		require.Equal(t, want, got, "bytea[] %s", name)
	}
	// Other values of the same types keep pgx's codec.
	want, err := theirs.Encode(1009, pgtype.BinaryFormatCode, []string{"a", "b"}, nil)
	require.NoError(t, err)
	got, err := ours.Encode(1009, pgtype.BinaryFormatCode, []string{"a", "b"}, nil)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// TestArraysRoundTrip: PostgreSQL reads the arrays a store's connection
// sends as the values they hold, NULLs included.
func TestArraysRoundTrip(t *testing.T) {
	t.Parallel()
	pool := openStore(t).Pool()
	ctx := context.Background()
	for name, a := range textArrays {
		var got []*string
		var isNull bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT $1::text[], $1::text[] IS NULL`, store.TextArray(a)).Scan(&got, &isNull), name)
		require.Equal(t, a == nil, isNull, "text[] %s", name)
		if a != nil {
			require.Equal(t, a, got, "text[] %s", name)
		}
	}
	for name, a := range byteaArrays {
		var got [][]byte
		var isNull bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT $1::bytea[], $1::bytea[] IS NULL`, store.ByteaArray(a)).Scan(&got, &isNull), name)
		require.Equal(t, a == nil, isNull, "bytea[] %s", name)
		if a != nil {
			require.Equal(t, len(a), len(got), "bytea[] %s", name)
			for i := range a {
				require.Equal(t, a[i] == nil, got[i] == nil, "bytea[] %s element %d", name, i)
				require.Equal(t, string(a[i]), string(got[i]), "bytea[] %s element %d", name, i)
			}
		}
	}
}
