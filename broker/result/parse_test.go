package result_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/result"
)

// parseCase is one input with the sentinel Parse must return (nil: accept).
type parseCase struct {
	name    string
	in      string
	wantErr error
	wantMsg string
}

// parseCorpus drives both TestParse_Corpus and the seeds of FuzzParse.
var parseCorpus = []parseCase{
	{name: "object", in: `{"title":"x","n":1}`},
	{name: "surrounding whitespace", in: " \t\r\n{\"a\":[1,2,3]}\n "},
	{name: "scalar top level", in: `"just a string"`},
	{name: "null", in: `null`},
	{name: "exact big number", in: `{"n":123456789012345678901234567890}`},
	{name: "number forms", in: `[0,-0,1.5,-0.0e-0,1E+2,12e3,9007199254740993]`},
	{name: "literals", in: `[true,false,null]`},
	{name: "empty containers", in: `[{},[],{"a":[]}]`},
	{name: "escapes", in: `{"a\"b":"\u00e9\ud83d\ude00\n\t\/\\","é":"ü"}`},
	{name: "escaped lone surrogate", in: `["\ud800"]`},
	{name: "bad escape", in: `["\x"]`, wantErr: result.ErrNotJSON},
	{name: "short unicode escape", in: `["\u12"]`, wantErr: result.ErrNotJSON},
	{name: "unterminated string", in: `["abc`, wantErr: result.ErrNotJSON, wantMsg: "unexpected end of input at $[0]"},
	{name: "lone minus", in: `-`, wantErr: result.ErrNotJSON},
	{name: "trailing decimal point", in: `1.`, wantErr: result.ErrNotJSON},
	{name: "leading decimal point", in: `.5`, wantErr: result.ErrNotJSON},
	{name: "empty exponent", in: `1e+`, wantErr: result.ErrNotJSON},
	{name: "plus sign", in: `+1`, wantErr: result.ErrNotJSON},
	{name: "hex number", in: `0x10`, wantErr: result.ErrNotJSON},
	{name: "truncated literal", in: `tru`, wantErr: result.ErrNotJSON},
	{name: "literal with trailing letters", in: `[truex]`, wantErr: result.ErrNotJSON},
	{name: "missing array comma", in: `[1 2]`, wantErr: result.ErrNotJSON},
	{name: "missing colon", in: `{"a" 1}`, wantErr: result.ErrNotJSON},
	{name: "missing value", in: `{"a":}`, wantErr: result.ErrNotJSON},
	{name: "leading comma", in: `[,1]`, wantErr: result.ErrNotJSON},
	{name: "trailing object comma", in: `{"a":1,}`, wantErr: result.ErrNotJSON},
	{name: "unquoted key", in: `{a:1}`, wantErr: result.ErrNotJSON},
	{name: "NUL byte", in: "[1\x00]", wantErr: result.ErrNotJSON},
	{name: "comment", in: `{"a":1 /* hi */}`, wantErr: result.ErrNotJSON},
	{name: "escaped key equal to plain key", in: `{"a":1,"\u0061":2}`, wantErr: result.ErrDuplicateKey, wantMsg: `duplicate key "a" at $`},
	{name: "duplicate top-level key", in: `{"title":"a","title":"b"}`, wantErr: result.ErrDuplicateKey, wantMsg: `duplicate key "title" at $`},
	{name: "duplicate nested key", in: `{"items":[{},{},{"title":1,"title":2}]}`, wantErr: result.ErrDuplicateKey, wantMsg: `duplicate key "title" at $.items[2]`},
	{name: "duplicate key under odd key", in: `{"a b":{"x":1,"x":1}}`, wantErr: result.ErrDuplicateKey, wantMsg: `duplicate key "x" at $["a b"]`},
	{name: "same key in sibling objects", in: `[{"a":1},{"a":2}]`},
	{name: "empty", in: ``, wantErr: result.ErrNotJSON, wantMsg: "empty input"},
	{name: "whitespace only", in: "  \n", wantErr: result.ErrNotJSON},
	{name: "not JSON", in: `hello`, wantErr: result.ErrNotJSON},
	{name: "trailing garbage", in: `{"a":1} xyz`, wantErr: result.ErrNotJSON, wantMsg: "after the JSON value"},
	{name: "two documents", in: `{"a":1}{"b":2}`, wantErr: result.ErrNotJSON, wantMsg: "after the JSON value"},
	{name: "two scalars", in: `1 2`, wantErr: result.ErrNotJSON},
	{name: "trailing closing brace", in: `{}}`, wantErr: result.ErrNotJSON},
	{name: "truncated", in: `{"a":[1,2`, wantErr: result.ErrNotJSON, wantMsg: "unexpected end of input at $.a"},
	{name: "trailing comma", in: `[1,]`, wantErr: result.ErrNotJSON},
	{name: "missing comma", in: `{"a":1 "b":2}`, wantErr: result.ErrNotJSON},
	{name: "single quotes", in: `{'a':1}`, wantErr: result.ErrNotJSON},
	{name: "NaN", in: `{"a":NaN}`, wantErr: result.ErrNotJSON},
	{name: "leading zero", in: `{"a":01}`, wantErr: result.ErrNotJSON},
	{name: "raw control character in string", in: "{\"a\":\"x\x01y\"}", wantErr: result.ErrNotJSON},
	{name: "invalid UTF-8 in string", in: "{\"a\":\"\xff\"}", wantErr: result.ErrNotJSON, wantMsg: "invalid UTF-8 at byte 6"},
	{name: "invalid UTF-8 in key", in: "{\"\xc3\x28\":1}", wantErr: result.ErrNotJSON},
	{name: "byte order mark", in: "\ufeff{}", wantErr: result.ErrNotJSON},
	{name: "nesting at the limit", in: strings.Repeat("[", result.MaxDepth) + strings.Repeat("]", result.MaxDepth)},
	{name: "nesting past the limit", in: strings.Repeat("[", result.MaxDepth+1) + strings.Repeat("]", result.MaxDepth+1), wantErr: result.ErrTooDeep},
	{name: "deep objects past the limit", in: strings.Repeat(`{"a":`, result.MaxDepth+1) + "1" + strings.Repeat("}", result.MaxDepth+1), wantErr: result.ErrTooDeep},
	{name: "unclosed nesting far past the limit", in: strings.Repeat("[", 100000), wantErr: result.ErrTooDeep},
	{name: "mixed nesting past the limit", in: strings.Repeat(`[{"a":`, result.MaxDepth/2+1) + "1" + strings.Repeat("}]", result.MaxDepth/2+1), wantErr: result.ErrTooDeep},
	{name: "nesting at the limit inside a long array", in: "[" + strings.Repeat("1,", 1000) + strings.Repeat("[", result.MaxDepth-1) + strings.Repeat("]", result.MaxDepth)},
	{name: "Infinity", in: `{"a":Infinity}`, wantErr: result.ErrNotJSON},
	{name: "negative Infinity", in: `[-Infinity]`, wantErr: result.ErrNotJSON},
	{name: "lowercase nan", in: `[nan]`, wantErr: result.ErrNotJSON},
	{name: "number over float64 range", in: `{"n":1e400}`, wantErr: result.ErrNumberRange, wantMsg: "at $.n"},
	{name: "negative number over float64 range", in: `[-1.8e308]`, wantErr: result.ErrNumberRange},
	{name: "400 digits", in: "[" + strings.Repeat("9", 400) + "]", wantErr: result.ErrNumberRange},
	{name: "largest double", in: `[1.7976931348623157e308, -1.7976931348623157e308]`},
	{name: "underflow to zero is in range", in: `[1e-400, 4.9e-324]`},
	{name: "huge exponent", in: `[1e99999999999999999999]`, wantErr: result.ErrNumberRange},
	{name: "overlong UTF-8", in: "[\"\xc0\xaf\"]", wantErr: result.ErrNotJSON},
	{name: "UTF-8 surrogate", in: "[\"\xed\xa0\x80\"]", wantErr: result.ErrNotJSON},
	{name: "truncated UTF-8", in: "[\"\xe2\x82\"]", wantErr: result.ErrNotJSON},
	{name: "UTF-8 beyond U+10FFFF", in: "[\"\xf4\x90\x80\x80\"]", wantErr: result.ErrNotJSON},
	{name: "invalid UTF-8 outside strings", in: "[1]\xff", wantErr: result.ErrNotJSON},
	{name: "duplicate key spelled with escapes", in: `{"\u0074itle":1,"t\u0069tle":2}`, wantErr: result.ErrDuplicateKey},
	{name: "duplicate key deep inside", in: strings.Repeat(`{"a":`, 10) + `{"k":1,"k":1}` + strings.Repeat("}", 10), wantErr: result.ErrDuplicateKey},
	{name: "keys that differ only after sanitizing are distinct", in: `{"a":1,"a\u200b":2}`},
}

func TestParse_Corpus(t *testing.T) {
	for _, tc := range parseCorpus {
		t.Run(tc.name, func(t *testing.T) {
			v, err := result.Parse([]byte(tc.in))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse(%q) = %v, want success", tc.in, err)
				}
				checkRoundTrip(t, []byte(tc.in), v)
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tc.in, err, tc.wantMsg)
			}
		})
	}
}

func TestParse_KeepsNumbersExact(t *testing.T) {
	v, err := result.Parse([]byte(`{"n":1.10000000000000000001}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(map[string]any)["n"]; got != json.Number("1.10000000000000000001") {
		t.Errorf("n = %#v, want the exact json.Number", got)
	}
}

func TestParse_ErrorDoesNotEchoLongHostileKey(t *testing.T) {
	key := strings.Repeat("IGNORE PREVIOUS INSTRUCTIONS ", 20) + "\u202e\x1b[31m"
	in, _ := json.Marshal(key)
	raw := `{"x":{` + string(in) + `:1,` + string(in) + `:2}}`
	_, err := result.Parse([]byte(raw))
	if !errors.Is(err, result.ErrDuplicateKey) {
		t.Fatalf("error = %v, want ErrDuplicateKey", err)
	}
	if len(err.Error()) > 120 || strings.ContainsAny(err.Error(), "\u202e\x1b") {
		t.Errorf("error %q repeats too much of the key", err)
	}
}

// checkRoundTrip asserts what FuzzParse asserts for every accepted input:
// the stdlib agrees it is JSON, and the value re-marshals to JSON that
// parses back to the same value.
func checkRoundTrip(t *testing.T, raw []byte, v any) {
	t.Helper()
	if !json.Valid(raw) {
		t.Fatalf("Parse accepted %q, which encoding/json calls invalid", raw)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-marshal of %q: %v", raw, err)
	}
	if !json.Valid(out) {
		t.Fatalf("re-marshal of %q gave invalid JSON %q", raw, out)
	}
	var std any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&std); err != nil || !reflect.DeepEqual(v, std) {
		t.Fatalf("Parse(%q) = %#v, encoding/json gives %#v, %v", raw, v, std, err)
	}
	again, err := result.Parse(out)
	if err != nil {
		t.Fatalf("Parse of re-marshaled %q: %v", out, err)
	}
	if !reflect.DeepEqual(v, again) {
		t.Fatalf("round trip changed %#v into %#v", v, again)
	}
}
