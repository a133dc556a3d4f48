package event

import (
	"bytes"
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
		if f, ok := appendFloat(b, v); ok {
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

// appendFloat appends f as encoding/json writes a float64: the shortest
// decimal that reads back as f, plain from 1e-6 up to 1e21 and in exponent
// form outside, where an exponent of one digit has no leading zero (1e-7,
// not 1e-07). It reports false for NaN and the infinities, which JSON
// cannot hold.
func appendFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
	}
	if a := math.Abs(f); a == 0 || a >= 1e-6 && a < 1e21 {
		return strconv.AppendFloat(b, f, 'f', -1, 64), true
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'e', -1, 64)
	// strconv writes at least two exponent digits. Only the negative
	// exponents from -7 to -9 can have a leading zero here: 1e21 and above
	// have two digits of their own.
	if e := start + bytes.LastIndexByte(b[start:], 'e'); len(b)-e == 4 && b[e+1] == '-' && b[e+2] == '0' {
		b[e+2] = b[e+3]
		b = b[:e+3]
	}
	return b, true
}

// escapes holds, for each ASCII character, what encoding/json writes for it
// in a string by default (HTML escaping on); "" for the characters written
// as they are.
var escapes = func() (e [utf8.RuneSelf]string) {
	const hex = "0123456789abcdef"
	for c := range e {
		if c < ' ' || c == '<' || c == '>' || c == '&' {
			e[c] = `\u00` + string(hex[c>>4]) + string(hex[c&0xf])
		}
	}
	e['"'], e['\\'] = `\"`, `\\`
	e['\b'], e['\f'], e['\n'], e['\r'], e['\t'] = `\b`, `\f`, `\n`, `\r`, `\t`
	return e
}()

// appendString appends s as a JSON string as encoding/json writes it by
// default: ASCII as escapes says, each byte of invalid UTF-8 as \ufffd, the
// line and paragraph separators U+2028 and U+2029 escaped (JavaScript before
// ES2019 reads them as line ends), everything else as it is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	done := 0 // s[:done] is in b
	for i := 0; i < len(s); {
		var esc string
		size := 1
		if c := s[i]; c < utf8.RuneSelf {
			esc = escapes[c]
		} else {
			var r rune
			r, size = utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				esc = `\ufffd`
			case r == '\u2028':
				esc = `\u2028`
			case r == '\u2029':
				esc = `\u2029`
			}
		}
		if esc != "" {
			b = append(append(b, s[done:i]...), esc...)
			done = i + size
		}
		i += size
	}
	return append(append(b, s[done:]...), '"')
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
