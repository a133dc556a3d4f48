package event

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// maxDepth is how deep the encoder nests maps and slices itself; deeper
// values go to encoding/json, which detects cycles.
const maxDepth = 64

// maxPooled is the largest buffer kept for the next event; a rare huge
// event is not worth holding on to.
const maxPooled = 64 << 10

// encoder renders values as encoding/json does for the types events hold,
// without reflection.
type encoder struct {
	buf []byte
	// kvs holds the sorted members of the maps being written, innermost
	// last: each map appends its own after its parent's and drops them when
	// done.
	kvs []member
}

type member struct {
	key string
	val any
}

var encoders = sync.Pool{New: func() any { return &encoder{buf: make([]byte, 0, 1024)} }}

func (e *encoder) release() {
	// An error can leave members behind; they must not keep values alive.
	clear(e.kvs)
	e.kvs = e.kvs[:0]
	if cap(e.buf) > maxPooled {
		e.buf = make([]byte, 0, 1024)
	}
	encoders.Put(e)
}

// appendValue appends v as json.Marshal renders it.
func (e *encoder) appendValue(b []byte, v any, depth int) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, v), nil
	case *string:
		if v == nil {
			return append(b, "null"...), nil
		}
		return appendString(b, *v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case float64:
		if f, ok := appendFloat(b, v, 64); ok {
			return f, nil
		}
	case float32:
		if f, ok := appendFloat(b, float64(v), 32); ok {
			return f, nil
		}
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case json.Number:
		// encoding/json writes the zero Number as 0.
		if v == "" {
			return append(b, '0'), nil
		}
		if isValidNumber(string(v)) {
			return append(b, v...), nil
		}
	case map[string]any:
		if depth < maxDepth {
			return e.appendMap(b, v, depth)
		}
	case []any:
		if depth < maxDepth {
			return e.appendSlice(b, v, depth)
		}
	case []string:
		return appendStrings(b, v), nil
	case map[string]string:
		return e.appendStringMap(b, v), nil
	}
	// Everything else, and the values above that encoding/json refuses,
	// is rendered and refused by encoding/json itself.
	raw, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, raw...), nil
}

func (e *encoder) appendMap(b []byte, m map[string]any, depth int) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	if len(m) == 0 {
		return append(b, "{}"...), nil
	}
	start := len(e.kvs)
	for k, v := range m {
		e.kvs = append(e.kvs, member{k, v})
	}
	end := len(e.kvs)
	sortMembers(e.kvs[start:end])
	b = append(b, '{')
	// Nested maps may grow e.kvs, moving it: index it afresh each time.
	for i := start; i < end; i++ {
		if i > start {
			b = append(b, ',')
		}
		b = appendString(b, e.kvs[i].key)
		b = append(b, ':')
		var err error
		if b, err = e.appendValue(b, e.kvs[i].val, depth+1); err != nil {
			return b, err
		}
	}
	clear(e.kvs[start:end])
	e.kvs = e.kvs[:start]
	return append(b, '}'), nil
}

func (e *encoder) appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	if len(m) == 0 {
		return append(b, "{}"...)
	}
	start := len(e.kvs)
	for k := range m {
		e.kvs = append(e.kvs, member{key: k})
	}
	kvs := e.kvs[start:]
	sortMembers(kvs)
	b = append(b, '{')
	for i, kv := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, kv.key)
		b = append(b, ':')
		b = appendString(b, m[kv.key])
	}
	clear(kvs)
	e.kvs = e.kvs[:start]
	return append(b, '}')
}

// sortMembers orders a map's members as encoding/json does: by key, byte by
// byte.
func sortMembers(kvs []member) {
	slices.SortFunc(kvs, func(a, b member) int { return strings.Compare(a.key, b.key) })
}

func (e *encoder) appendSlice(b []byte, s []any, depth int) ([]byte, error) {
	if s == nil {
		return append(b, "null"...), nil
	}
	b = append(b, '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = e.appendValue(b, v, depth+1); err != nil {
			return b, err
		}
	}
	return append(b, ']'), nil
}

func appendStrings(b []byte, s []string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

// appendFloat appends f as encoding/json does for a float of bits bits: like
// JavaScript, plain digits unless very small or large. It reports false for
// NaN and infinities, which JSON cannot hold.
func appendFloat(b []byte, f float64, bits int) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	abs := math.Abs(f)
	format := byte('f')
	// The cutoffs compare in the value's own precision, as encoding/json does.
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// e-09 is written e-9.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

const hex = "0123456789abcdef"

// htmlSafe marks the ASCII bytes written as they are in a JSON string by
// encoding/json with HTML escaping on (its default): all but control
// characters, '"', '\\', '<', '>' and '&'.
var htmlSafe = func() (safe [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		safe[c] = true
	}
	for _, c := range `"\<>&` {
		safe[c] = false
	}
	return safe
}()

// appendString appends s as a JSON string escaped as encoding/json escapes
// it by default: short escapes for '"', '\\', \b, \f, \n, \r and \t; \u00XX
// for other control characters and '<', '>', '&'; \ufffd for each byte of
// invalid UTF-8; \u2028 and \u2029 for the line and paragraph separators.
func appendString[S []byte | string](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if htmlSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		// Converting at most UTFMax bytes keeps a []byte source off the heap.
		n := min(len(s)-i, utf8.UTFMax)
		r, size := utf8.DecodeRuneInString(string(s[i : i+n]))
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Both are valid in JSON; they are escaped for older JavaScript parsers.
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// isValidNumber reports whether s is a JSON number (RFC 8259, section 6),
// the check encoding/json makes before writing a json.Number.
func isValidNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	default:
		return false
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = skipDigits(s[1:])
	}
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		s = skipDigits(s[2:])
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		s = skipDigits(s)
	}
	return s == ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func skipDigits(s string) string {
	for len(s) > 0 && isDigit(s[0]) {
		s = s[1:]
	}
	return s
}
