// Package answer checks a model's answer against the job's result schema
// inside the sandbox, before the agent writes it. It lives with the agent
// binary so that the sandbox runner, which imports the agent package for
// its job types, never links the JSON Schema library; the broker checks
// the result again, as it checks every job's.
package answer

import (
	"bytes"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Compile compiles a result schema into a check of a decoded JSON value
// (numbers as json.Number). A schema that refers to anything outside
// itself is refused: the sandbox loads nothing.
func Compile(schema []byte) (func(v any) error, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource("airlock:result-schema.json", doc); err != nil {
		return nil, err
	}
	s, err := c.Compile("airlock:result-schema.json")
	if err != nil {
		return nil, err
	}
	return s.Validate, nil
}

// noLoader refuses every reference the schema makes outside itself.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("the schema refers to %q; only references within it are allowed", url)
}
