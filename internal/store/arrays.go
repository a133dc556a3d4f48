package store

import (
	"encoding/binary"
	"slices"

	"github.com/jackc/pgx/v5/pgtype"
)

// The multi-row statements send each column as one array: some 150 values a
// request. pgx's array codec encodes each element through its own encode
// plan, and a *string element through reflection, which allocates. The
// column arrays are always text[] of *string (nil for NULL) or bytea[] of
// []byte, so they are written here directly, in PostgreSQL's binary array
// format, byte for byte as pgx writes them.

// textArray is a text[] argument; a nil element is NULL, a nil array is NULL.
type textArray []*string

// byteaArray is a bytea[] argument; a nil element is NULL, a nil array is NULL.
type byteaArray [][]byte

const (
	textOID       = 25
	byteaOID      = 17
	textArrayOID  = 1009
	byteaArrayOID = 1001
)

// registerArrays makes m encode textArray and byteaArray with the plans
// below; every other value of those types keeps pgx's codec.
func registerArrays(m *pgtype.Map) {
	for _, oid := range []uint32{textArrayOID, byteaArrayOID} {
		t, ok := m.TypeForOID(oid)
		if !ok {
			continue
		}
		m.RegisterType(&pgtype.Type{Name: t.Name, OID: t.OID, Codec: arrayCodec{t.Codec}})
	}
}

// arrayCodec is pgx's array codec with direct binary plans for textArray
// and byteaArray.
type arrayCodec struct{ pgtype.Codec }

func (c arrayCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if format == pgtype.BinaryFormatCode {
		switch value.(type) {
		case textArray:
			return textArrayPlan{}
		case byteaArray:
			return byteaArrayPlan{}
		}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

type textArrayPlan struct{}

func (textArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	a := value.(textArray)
	if a == nil {
		return nil, nil
	}
	size := 0
	for _, s := range a {
		if s != nil {
			size += len(*s)
		}
	}
	buf, nulls := arrayHeader(buf, textOID, len(a), size)
	for _, s := range a {
		if s == nil {
			buf = binary.BigEndian.AppendUint32(buf, 0xffffffff) // -1: NULL
			binary.BigEndian.PutUint32(buf[nulls:], 1)
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(*s)))
		buf = append(buf, *s...)
	}
	return buf, nil
}

type byteaArrayPlan struct{}

func (byteaArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	a := value.(byteaArray)
	if a == nil {
		return nil, nil
	}
	size := 0
	for _, b := range a {
		size += len(b)
	}
	buf, nulls := arrayHeader(buf, byteaOID, len(a), size)
	for _, b := range a {
		if b == nil {
			buf = binary.BigEndian.AppendUint32(buf, 0xffffffff)
			binary.BigEndian.PutUint32(buf[nulls:], 1)
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
		buf = append(buf, b...)
	}
	return buf, nil
}

// arrayHeader appends the header of a one-dimensional array of n elements,
// with room for their data, and returns where its has-NULLs flag is.
func arrayHeader(buf []byte, elemOID uint32, n, data int) ([]byte, int) {
	buf = slices.Grow(buf, 20+4*n+data)
	buf = binary.BigEndian.AppendUint32(buf, 1) // dimensions
	nulls := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, 0)
	buf = binary.BigEndian.AppendUint32(buf, elemOID)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	buf = binary.BigEndian.AppendUint32(buf, 1) // lower bound
	return buf, nulls
}
