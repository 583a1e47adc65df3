package result

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// schemaURL names the schema document inside the compiler. It is not a real
// location: relative references resolve against it and then reach the
// refusing loader.
const schemaURL = "airlock:///result.schema.json"

// maxReported bounds how many validation failures one error lists.
const maxReported = 3

var printer = message.NewPrinter(language.English)

// Schema is a compiled, self-contained JSON Schema for a job's result. It is
// immutable once compiled, so jobs may share it.
type Schema struct {
	s *jsonschema.Schema
}

// CompileSchema compiles a JSON Schema (draft 2020-12 unless it names
// another draft with $schema). The schema must be one strict JSON document
// and self-contained: any reference to another document, by http(s), file
// or relative URL, is refused, because loading it would make the broker
// fetch or read something on a caller's say-so. Only the JSON Schema metaschemas resolve,
// from copies built into the validator, with no I/O.
func CompileSchema(schema string) (*Schema, error) {
	if strings.TrimSpace(schema) == "" {
		return nil, fmt.Errorf("%w: schema is empty", ErrBadSchema)
	}
	doc, err := Parse([]byte(schema))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSchema, err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(refusingLoader{})
	// Pin the draft so an upgrade of the validator cannot change what an
	// existing schema means.
	c.DefaultDraft(jsonschema.Draft2020)
	// Schema authors who write "format" expect it checked; since 2019-09 the
	// spec makes it advisory by default, which would fail open.
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSchema, err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		// The loader's own message already names the URL and the fix.
		var le *jsonschema.LoadURLError
		if errors.As(err, &le) {
			err = le.Err
		}
		return nil, fmt.Errorf("%w: %s", ErrBadSchema, oneLine(err.Error()))
	}
	return &Schema{s: s}, nil
}

// CheckSchema compiles schema and drops it: the form policy.WithSchemaCheck
// takes, so that a profile's default schema is checked when it loads.
func CheckSchema(schema string) error {
	_, err := CompileSchema(schema)
	return err
}

// refusingLoader is the compiler's only way to fetch a document, and it
// never does.
type refusingLoader struct{}

// Load refuses every URL with advice a schema author can act on.
func (refusingLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("refusing to load %s: a result schema must be self-contained; "+
		"move shared definitions under \"$defs\" and reference them as \"#/$defs/NAME\"", url)
}

// Validate checks v, as returned by Parse, against the schema. The error
// wraps ErrSchemaInvalid and names at most a few failures by JSON path. It
// repeats no string values and only truncated keys from v, because the
// message travels back to the caller next to, and as untrusted as, the
// result itself.
func (s *Schema) Validate(v any) error {
	err := s.s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("%w: %v", ErrSchemaInvalid, err)
	}
	var leaves []*jsonschema.ValidationError
	collectLeaves(ve, &leaves)
	var msgs []string
	seen := map[string]bool{}
	for _, l := range leaves {
		m := "at " + instancePath(v, l.InstanceLocation) + ": " + describe(l.ErrorKind)
		if !seen[m] {
			seen[m] = true
			msgs = append(msgs, m)
		}
	}
	if len(msgs) > maxReported {
		msgs = append(msgs[:maxReported], fmt.Sprintf("and %d more", len(msgs)-maxReported))
	}
	return fmt.Errorf("%w: %s", ErrSchemaInvalid, strings.Join(msgs, "; "))
}

// collectLeaves gathers the most specific failures; the inner nodes only
// say that a group of keywords failed.
func collectLeaves(e *jsonschema.ValidationError, out *[]*jsonschema.ValidationError) {
	if len(e.Causes) == 0 {
		*out = append(*out, e)
		return
	}
	for _, c := range e.Causes {
		collectLeaves(c, out)
	}
}

// instancePath turns the validator's JSON pointer tokens into a JSONPath,
// using v to tell array indices from keys that look like numbers.
func instancePath(v any, tokens []string) string {
	steps := make([]step, 0, len(tokens))
	for _, tok := range tokens {
		switch cur := v.(type) {
		case []any:
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(cur) {
				steps = append(steps, step{index: i, isIndex: true})
				v = cur[i]
				continue
			}
		case map[string]any:
			v = cur[tok]
		default:
			v = nil
		}
		steps = append(steps, step{key: tok})
	}
	return formatPath(steps)
}

// describe says what failed. The kinds whose standard message quotes the
// instance get a message of their own that does not.
func describe(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Pattern:
		return "string does not match pattern " + strconv.Quote(k.Want)
	case *kind.Format:
		return "value is not a valid " + strconv.Quote(k.Want)
	case *kind.PropertyNames:
		return "property name " + quote(k.Property) + " is not allowed"
	case *kind.AdditionalProperties:
		names := make([]string, 0, maxReported)
		for i, p := range k.Properties {
			if i == maxReported {
				names = append(names, fmt.Sprintf("and %d more", len(k.Properties)-maxReported))
				break
			}
			names = append(names, quote(p))
		}
		return "properties not allowed: " + strings.Join(names, ", ")
	case *kind.Minimum:
		return "must be >= " + ratString(k.Want)
	case *kind.Maximum:
		return "must be <= " + ratString(k.Want)
	case *kind.ExclusiveMinimum:
		return "must be > " + ratString(k.Want)
	case *kind.ExclusiveMaximum:
		return "must be < " + ratString(k.Want)
	case *kind.MultipleOf:
		// The library prints the instance as a rounded double, which can
		// show a failing number as equal to the limit; state the rule instead.
		return "must be a multiple of " + ratString(k.Want)
	case *kind.Const, *kind.Enum:
		// These print only the schema's values, which the caller wrote.
		return oneLine(k.LocalizedString(printer))
	}
	// The rest print counts, limits, types and schema-supplied names; the
	// numbers they echo are at most a long run of digits, so bound them.
	return truncate(oneLine(k.LocalizedString(printer)), 200)
}

// ratString prints a number from the schema, exactly when it is an integer.
func ratString(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// oneLine folds a multi-line message so it fits one status line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
