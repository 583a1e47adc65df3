package result

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxDepth is how many arrays and objects Parse lets nest. It keeps every
// later recursive walk (validation, sanitizing, conversion) shallow.
const MaxDepth = 64

// Parse strictly decodes raw into map[string]any, []any, string, bool, nil
// and json.Number. It accepts only what encoding/json accepts, and refuses
// more: invalid UTF-8 (which encoding/json would silently replace), any data
// after the first value, duplicate keys (which parsers resolve differently,
// so a validator and a consumer could see different documents), nesting
// past MaxDepth and numbers beyond float64 range. NaN and Infinity are not
// JSON and are refused like any other bare word. Numbers stay json.Number
// so the schema judges the exact text. Escaped lone surrogates such as
// "\ud800" decode to U+FFFD, as in encoding/json.
//
// It is a hand-written parser rather than a walk over json.Decoder.Token
// because the latter is an order of magnitude slower, and the input is
// adversarial; FuzzParse checks it against encoding/json.
func Parse(raw []byte) (any, error) {
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%w: invalid UTF-8 at byte %d", ErrNotJSON, invalidUTF8At(raw))
	}
	p := parser{data: raw}
	p.skipSpace()
	if p.pos == len(p.data) {
		return nil, fmt.Errorf("%w: empty input", ErrNotJSON)
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, fmt.Errorf("%w: data after the JSON value at byte %d", ErrNotJSON, p.pos)
	}
	return v, nil
}

// parser is a recursive-descent JSON parser; recursion is bounded by
// MaxDepth, checked before each container is entered.
type parser struct {
	data []byte
	pos  int
	path []step
}

func (p *parser) value() (any, error) {
	if p.pos == len(p.data) {
		return nil, p.errEOF()
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.string()
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	}
	return nil, p.errUnexpected("looking for the beginning of a value")
}

func (p *parser) object() (map[string]any, error) {
	if err := p.descend(); err != nil {
		return nil, err
	}
	p.pos++ // '{'
	obj := map[string]any{}
	p.skipSpace()
	if p.peek() == '}' {
		p.pos++
		return obj, nil
	}
	for {
		if p.peek() != '"' {
			return nil, p.errUnexpected("looking for an object key")
		}
		key, err := p.string()
		if err != nil {
			return nil, err
		}
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("%w %s at %s", ErrDuplicateKey, quote(key), formatPath(p.path))
		}
		p.skipSpace()
		if p.peek() != ':' {
			return nil, p.errUnexpected("after an object key")
		}
		p.pos++
		p.skipSpace()
		p.path = append(p.path, step{key: key})
		v, err := p.value()
		p.path = p.path[:len(p.path)-1]
		if err != nil {
			return nil, err
		}
		obj[key] = v
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
			p.skipSpace()
		case '}':
			p.pos++
			return obj, nil
		default:
			return nil, p.errUnexpected("after an object value")
		}
	}
}

func (p *parser) array() ([]any, error) {
	if err := p.descend(); err != nil {
		return nil, err
	}
	p.pos++ // '['
	arr := []any{}
	p.skipSpace()
	if p.peek() == ']' {
		p.pos++
		return arr, nil
	}
	for {
		p.path = append(p.path, step{index: len(arr), isIndex: true})
		v, err := p.value()
		p.path = p.path[:len(p.path)-1]
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
			p.skipSpace()
		case ']':
			p.pos++
			return arr, nil
		default:
			return nil, p.errUnexpected("after an array element")
		}
	}
}

// descend refuses to open a container past MaxDepth.
func (p *parser) descend() error {
	if len(p.path) >= MaxDepth {
		return fmt.Errorf("%w: more than %d levels at %s", ErrTooDeep, MaxDepth, formatPath(p.path))
	}
	return nil
}

// string scans a string token. Escapes are rare in practice, so they are
// left to encoding/json, which decodes them exactly as JSON defines.
func (p *parser) string() (string, error) {
	start := p.pos
	p.pos++ // '"'
	escaped := false
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			if !escaped {
				return string(p.data[start+1 : p.pos-1]), nil
			}
			var s string
			if err := json.Unmarshal(p.data[start:p.pos], &s); err != nil {
				return "", fmt.Errorf("%w: bad string at %s (byte %d): %v", ErrNotJSON, formatPath(p.path), start, err)
			}
			return s, nil
		case c == '\\':
			escaped = true
			if err := p.escape(); err != nil {
				return "", err
			}
		case c < 0x20:
			return "", p.errUnexpected("in a string")
		default:
			p.pos++
		}
	}
	return "", p.errEOF()
}

// escape checks the escape sequence at p.pos and steps over it.
func (p *parser) escape() error {
	p.pos++ // '\\'
	switch p.peek() {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		p.pos++
		return nil
	case 'u':
		p.pos++
		for range 4 {
			c := p.peek()
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return p.errUnexpected("in a \\u escape")
			}
			p.pos++
		}
		return nil
	}
	return p.errUnexpected("in a string escape")
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and keeps its text.
func (p *parser) number() (json.Number, error) {
	start := p.pos
	if p.peek() == '-' {
		p.pos++
	}
	switch c := p.peek(); {
	case c == '0':
		p.pos++
	case '1' <= c && c <= '9':
		p.digits()
	default:
		return "", p.errUnexpected("in a number")
	}
	if p.peek() == '.' {
		p.pos++
		if !isDigit(p.peek()) {
			return "", p.errUnexpected("after a decimal point")
		}
		p.digits()
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.pos++
		if c := p.peek(); c == '+' || c == '-' {
			p.pos++
		}
		if !isDigit(p.peek()) {
			return "", p.errUnexpected("in an exponent")
		}
		p.digits()
	}
	n := json.Number(p.data[start:p.pos])
	if !fitsFloat64(string(n)) {
		return "", fmt.Errorf("%w: at %s (byte %d)", ErrNumberRange, formatPath(p.path), start)
	}
	return n, nil
}

// fitsFloat64 reports whether the JSON number s is within float64 range, so
// that every consumer, whatever its number type, reads the same value.
// Numbers that underflow to zero are accepted: they are in range, merely
// imprecise, like any long decimal.
func fitsFloat64(s string) bool {
	// Without an exponent, fewer than 309 digits is below 1e308.
	if len(s) < 309 && strings.IndexAny(s, "eE") < 0 {
		return true
	}
	f, err := strconv.ParseFloat(s, 64)
	return err == nil || !math.IsInf(f, 0)
}

func (p *parser) digits() {
	for isDigit(p.peek()) {
		p.pos++
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (p *parser) literal(lit string) error {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(lit)) {
		return p.errUnexpected("in literal " + lit)
	}
	p.pos += len(lit)
	return nil
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// peek returns the byte at p.pos, or 0 at the end; 0 is never valid where
// peek is used, so the end of input falls into the error paths.
func (p *parser) peek() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

func (p *parser) errEOF() error {
	return fmt.Errorf("%w: unexpected end of input at %s", ErrNotJSON, formatPath(p.path))
}

// errUnexpected names the offending character, escaped, and where it is.
func (p *parser) errUnexpected(context string) error {
	if p.pos >= len(p.data) {
		return p.errEOF()
	}
	r, _ := utf8.DecodeRune(p.data[p.pos:])
	return fmt.Errorf("%w: unexpected character %s %s at %s (byte %d)",
		ErrNotJSON, strconv.QuoteRune(r), context, formatPath(p.path), p.pos)
}

// invalidUTF8At returns the offset of the first byte that is not valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}
