package modelserver

import (
	"encoding/json"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	// fillShallowDepth is the depth past which Fill makes only what a
	// schema requires, so that a recursive schema whose recursion is
	// optional comes to an end.
	fillShallowDepth = 6
	// fillMaxDepth stops a schema whose recursion is required.
	fillMaxDepth = 32
	// fillMaxItems bounds an array Fill makes, whatever minItems says.
	fillMaxItems = 1024
)

// formatExamples are values for the string formats a result schema is
// likely to use.
var formatExamples = map[string]string{
	"date-time": "2024-01-01T00:00:00Z",
	"date":      "2024-01-01",
	"time":      "00:00:00Z",
	"duration":  "P1D",
	"email":     "stand-in@example.com",
	"hostname":  "example.com",
	"ipv4":      "127.0.0.1",
	"ipv6":      "::1",
	"uri":       "https://example.com/",
	"url":       "https://example.com/",
	"uuid":      "00000000-0000-4000-8000-000000000000",
}

// Fill returns a value that fits a JSON Schema, best effort, with text in
// its strings: objects get their required and listed properties, arrays
// their minimum of items (at least one), enum and const their first value,
// numbers a value within the bounds, strings text cut to maxLength or
// padded to minLength, or an example of their format. $ref within the
// schema, anyOf, oneOf and allOf are followed; pattern and not are not. An
// empty or unreadable schema gives text itself.
func Fill(schema json.RawMessage, text string) any {
	var root any
	if len(schema) == 0 || json.Unmarshal(schema, &root) != nil {
		return text
	}
	f := schemaFiller{root: root, text: text}
	return f.value(root, 0, 0)
}

// schemaFiller walks one schema; variant makes the items of a uniqueItems
// array differ.
type schemaFiller struct {
	root any
	text string
}

func (f *schemaFiller) value(s any, depth, variant int) any {
	m, ok := s.(map[string]any)
	if !ok || depth > fillMaxDepth {
		// true, or a schema too deep to go on with.
		return f.text
	}
	if ref, ok := m["$ref"].(string); ok {
		if target, ok := f.resolve(ref); ok {
			return f.value(target, depth+1, variant)
		}
	}
	if c, ok := m["const"]; ok {
		return c
	}
	if e, ok := m["enum"].([]any); ok && len(e) > 0 {
		return e[variant%len(e)]
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := m[k].([]any); ok && len(alts) > 0 {
			return f.value(firstNotNull(alts), depth+1, variant)
		}
	}
	typ := schemaType(m)
	var v any
	switch typ {
	case "object":
		v = f.object(m, depth, variant)
	case "array":
		v = f.array(m, depth)
	case "integer":
		v = int64(number(m, true, variant))
	case "number":
		v = number(m, false, variant)
	case "boolean":
		v = false
	case "null":
		v = nil
	default:
		v = f.string(m, variant)
	}
	// allOf's parts constrain the same value: objects take the properties
	// of each; otherwise the first part decides, if the schema itself did
	// not say what the value is.
	if all, ok := m["allOf"].([]any); ok {
		decided := typ != ""
		for _, part := range all {
			pv := f.value(part, depth+1, variant)
			obj, isObj := v.(map[string]any)
			extra, extraObj := pv.(map[string]any)
			switch {
			case isObj && extraObj:
				for k, x := range extra {
					if _, have := obj[k]; !have {
						obj[k] = x
					}
				}
			case !decided:
				v, decided = pv, true
			}
		}
	}
	return v
}

// resolve follows a $ref within the schema ("#", "#/$defs/x",
// "#/definitions/x" or any JSON pointer); others are not followed.
func (f *schemaFiller) resolve(ref string) (any, bool) {
	ptr, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, false
	}
	if p, err := url.PathUnescape(ptr); err == nil {
		ptr = p
	}
	cur := f.root
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch c := cur.(type) {
		case map[string]any:
			cur, ok = c[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			ok = err == nil && i >= 0 && i < len(c)
			if ok {
				cur = c[i]
			}
		default:
			ok = false
		}
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func (f *schemaFiller) object(m map[string]any, depth, variant int) map[string]any {
	out := map[string]any{}
	props, _ := m["properties"].(map[string]any)
	required := map[string]bool{}
	if req, ok := m["required"].([]any); ok {
		for _, r := range req {
			if name, ok := r.(string); ok {
				required[name] = true
			}
		}
	}
	for name, ps := range props {
		if ps == false || (depth >= fillShallowDepth && !required[name]) {
			continue
		}
		out[name] = f.value(ps, depth+1, variant)
	}
	for name := range required {
		if _, done := out[name]; done {
			continue
		}
		// A required name that is not listed is governed by
		// additionalProperties, when that is a schema.
		extra := m["additionalProperties"]
		if _, isSchema := extra.(map[string]any); !isSchema {
			extra = true
		}
		out[name] = f.value(extra, depth+1, variant)
	}
	return out
}

func (f *schemaFiller) array(m map[string]any, depth int) []any {
	prefix, _ := m["prefixItems"].([]any)
	items := m["items"]
	if tuple, ok := items.([]any); ok {
		// Draft 4 to 2019-09 wrote a tuple as an items array.
		prefix, items = tuple, m["additionalItems"]
	}
	n := 1
	if depth >= fillShallowDepth {
		n = 0
	}
	if v, ok := m["minItems"].(float64); ok {
		n = max(n, int(min(v, fillMaxItems)))
	}
	n = max(n, len(prefix))
	if v, ok := m["maxItems"].(float64); ok {
		n = min(n, int(v))
	}
	unique, _ := m["uniqueItems"].(bool)
	out := make([]any, 0, n)
	for i := range n {
		s := items
		if i < len(prefix) {
			s = prefix[i]
		} else if s == nil {
			s = true
		}
		variant := 0
		if unique {
			variant = i
		}
		out = append(out, f.value(s, depth+1, variant))
	}
	return out
}

func (f *schemaFiller) string(m map[string]any, variant int) string {
	if format, ok := m["format"].(string); ok {
		if ex, ok := formatExamples[format]; ok {
			return ex
		}
	}
	text, suffix := []rune(f.text), ""
	if variant > 0 {
		suffix = " " + strconv.Itoa(variant+1)
	}
	if v, ok := m["maxLength"].(float64); ok {
		// The suffix that makes the items of a uniqueItems array differ is
		// kept; the text gives way to it.
		room := max(int(v)-len(suffix), 0)
		if len(text) > room {
			text = text[:room]
		}
		if len(suffix) > int(v) {
			suffix = suffix[len(suffix)-int(v):]
		}
	}
	out := string(text) + suffix
	if v, ok := m["minLength"].(float64); ok {
		if short := int(min(v, 1<<20)) - utf8.RuneCountInString(out); short > 0 {
			out += strings.Repeat("x", short)
		}
	}
	return out
}

// number picks 0, or the value nearest it within the schema's bounds and
// on its multipleOf; a variant is that many steps above it, where there is
// room.
func number(m map[string]any, integer bool, variant int) float64 {
	lo, hi := math.Inf(-1), math.Inf(1)
	loOpen, hiOpen := false, false
	if v, ok := m["minimum"].(float64); ok {
		lo = v
		// Draft 4 made exclusiveMinimum a boolean beside minimum.
		loOpen, _ = m["exclusiveMinimum"].(bool)
	}
	if v, ok := m["exclusiveMinimum"].(float64); ok && v >= lo {
		lo, loOpen = v, true
	}
	if v, ok := m["maximum"].(float64); ok {
		hi = v
		hiOpen, _ = m["exclusiveMaximum"].(bool)
	}
	if v, ok := m["exclusiveMaximum"].(float64); ok && v <= hi {
		hi, hiOpen = v, true
	}
	step := 0.0
	if v, ok := m["multipleOf"].(float64); ok && v > 0 {
		step = v
	}
	if integer {
		step = integerStep(step)
	}
	above := func(x float64) bool { return x > lo || (!loOpen && x == lo) }
	below := func(x float64) bool { return x < hi || (!hiOpen && x == hi) }

	v := 0.0
	if !above(v) {
		v = lo
		if loOpen {
			// The midpoint stays inside a narrow open range; a whole step
			// above is the next candidate for integers and multiples.
			v = lo + 1
			if !math.IsInf(hi, 1) && step == 0 {
				v = lo + (hi-lo)/2
			}
		}
	}
	if !below(v) {
		v = hi
		if hiOpen {
			v = hi - 1
			if !math.IsInf(lo, -1) && step == 0 {
				v = lo + (hi-lo)/2
			}
		}
	}
	if step > 0 {
		k := math.Ceil(v / step)
		if !above(k * step) {
			k++
		}
		if !below(k * step) {
			k = math.Floor(v / step)
		}
		v = k * step
	}
	if variant > 0 {
		next := v + float64(variant)*max(step, 1)
		if below(next) {
			v = next
		}
	}
	return v
}

// integerStep is the step of an integer's values: its multipleOf when that
// is whole, else 1.
func integerStep(step float64) float64 {
	if step >= 1 && step == math.Trunc(step) {
		return step
	}
	return 1
}

// schemaType is a schema's type, or the one its keywords imply; "" when
// nothing says, which Fill treats as a string.
func schemaType(m map[string]any) string {
	switch t := m["type"].(type) {
	case string:
		return t
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok && s != "null" {
				return s
			}
		}
		if len(t) > 0 {
			return "null"
		}
	}
	if _, ok := m["type"]; ok {
		return "string"
	}
	has := func(keys ...string) bool {
		return slices.ContainsFunc(keys, func(k string) bool { _, ok := m[k]; return ok })
	}
	switch {
	case has("properties", "required", "additionalProperties"):
		return "object"
	case has("items", "prefixItems", "minItems", "maxItems"):
		return "array"
	case has("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
		return "number"
	case has("minLength", "maxLength", "pattern", "format"):
		return "string"
	}
	return ""
}

// firstNotNull is the first alternative that is not just null, which is
// the more useful one to fill.
func firstNotNull(alts []any) any {
	for _, a := range alts {
		if m, ok := a.(map[string]any); ok && m["type"] == "null" {
			continue
		}
		return a
	}
	return alts[0]
}
