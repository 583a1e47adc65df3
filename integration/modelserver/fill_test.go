package modelserver_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock/airlock/integration/modelserver"
)

func TestFill_FitsTheSchema(t *testing.T) {
	for _, tc := range []struct {
		name, schema string
	}{
		{"empty", `{}`},
		{"string bounds", `{"type":"string","minLength":3,"maxLength":5}`},
		{"long minLength", `{"type":"string","minLength":40}`},
		{"enum", `{"enum":["red","green"]}`},
		{"const", `{"const":{"a":[1,2]}}`},
		{"nullable", `{"type":["null","integer"],"minimum":7}`},
		{"integer exclusive", `{"type":"integer","exclusiveMinimum":5,"exclusiveMaximum":7}`},
		{"integer below zero", `{"type":"integer","maximum":-3}`},
		{"integer multiple", `{"type":"integer","minimum":10,"multipleOf":7}`},
		{"number open interval", `{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1}`},
		{"number multiple", `{"type":"number","minimum":0.3,"maximum":1,"multipleOf":0.25}`},
		{"boolean and null", `{"type":"object","properties":{"b":{"type":"boolean"},"n":{"type":"null"}},"required":["b","n"]}`},
		{"nested result", `{
			"type":"object",
			"properties":{
				"summary":{"type":"string","maxLength":10},
				"verdict":{"type":"string","enum":["benign","suspicious","malicious"]},
				"confidence":{"type":"number","minimum":0,"maximum":1},
				"links":{"type":"array","items":{"type":"object","properties":{"url":{"type":"string","format":"uri"},"title":{"type":"string"}},"required":["url","title"],"additionalProperties":false}},
				"tags":{"type":"array","items":{"type":"string","maxLength":4},"minItems":3,"maxItems":5,"uniqueItems":true}
			},
			"required":["summary","verdict","confidence","links","tags"],
			"additionalProperties":false
		}`},
		{"unique enum items", `{"type":"array","items":{"enum":["a","b","c"]},"minItems":3,"uniqueItems":true}`},
		{"unique integers", `{"type":"array","items":{"type":"integer","minimum":1},"minItems":4,"uniqueItems":true}`},
		{"required but unlisted", `{"type":"object","required":["x"],"additionalProperties":{"type":"integer"}}`},
		{"defs and ref", `{"$defs":{"item":{"type":"object","properties":{"n":{"type":"integer","minimum":2}},"required":["n"]}},"type":"array","items":{"$ref":"#/$defs/item"},"minItems":2}`},
		{"recursive optional", `{"$defs":{"node":{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["name"]}},"$ref":"#/$defs/node"}`},
		{"anyOf", `{"anyOf":[{"type":"null"},{"type":"string","minLength":2}]}`},
		{"oneOf", `{"oneOf":[{"type":"integer","minimum":3,"maximum":3},{"type":"string","maxLength":0}]}`},
		{"allOf merges", `{"allOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]},{"properties":{"b":{"type":"integer"}},"required":["b"]}]}`},
		{"prefixItems", `{"type":"array","prefixItems":[{"type":"integer"},{"type":"string"}],"items":false,"minItems":2}`},
		{"draft-04 exclusive boolean", `{"$schema":"http://json-schema.org/draft-04/schema#","type":"integer","minimum":4,"exclusiveMinimum":true}`},
		{"draft-07 tuple", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"array","items":[{"type":"boolean"},{"type":"integer","maximum":-1}],"additionalItems":false}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := modelserver.Fill(json.RawMessage(tc.schema), "the quick brown fox jumps over the lazy dog")
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			validateJSON(t, compileSchema(t, tc.schema), b)
		})
	}
}

func TestFill_UsesTheText(t *testing.T) {
	got := modelserver.Fill(json.RawMessage(`{"type":"object","properties":{"answer":{"type":"string"},"short":{"type":"string","maxLength":5}},"required":["answer"]}`), "cats sleep a lot")
	want := map[string]any{"answer": "cats sleep a lot", "short": "cats "}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Fill = %#v, want %#v", got, want)
	}
	if got := modelserver.Fill(nil, "plain"); got != "plain" {
		t.Errorf("Fill without a schema = %#v, want the text", got)
	}
	if got := modelserver.Fill(json.RawMessage(`{"type":"string","format":"date-time"}`), "x"); !strings.HasPrefix(got.(string), "20") {
		t.Errorf("a date-time is %q", got)
	}
}
