package result_test

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/airlock/airlock/broker/result"
)

func FuzzParse(f *testing.F) {
	for _, tc := range parseCorpus {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := result.Parse(raw)
		if err != nil {
			// Whatever encoding/json accepts, Parse refuses only for the
			// reasons it adds on top.
			if json.Valid(raw) && utf8.Valid(raw) &&
				!errors.Is(err, result.ErrDuplicateKey) && !errors.Is(err, result.ErrTooDeep) {
				t.Fatalf("Parse(%q) = %v, but it is valid JSON", raw, err)
			}
			return
		}
		checkRoundTrip(t, raw, v)
		if _, ok := v.(map[string]any); ok {
			if _, err := result.ToStruct(v); err != nil && !errors.Is(err, result.ErrSchemaInvalid) {
				t.Fatalf("ToStruct after Parse(%q): %v", raw, err)
			}
		}
	})
}
