package result_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/result"
	"google.golang.org/protobuf/encoding/protojson"
)

// poisoningSchema is what the poisoned jobs are asked for; additional
// properties are refused, as in the shipped profiles.
const poisoningSchema = `{
	"type": "object",
	"required": ["title", "summary"],
	"additionalProperties": false,
	"properties": {"title": {"type": "string"}, "summary": {"type": "string"}}
}`

// placeholders fill the {{…}} of the payload corpus. Only CANARY and
// BROKER_TOKEN are secrets the broker holds.
var placeholders = map[string]string{
	"{{CANARY}}":         "canary-5f1e9a2b7c3d4e60",
	"{{BROKER_TOKEN}}":   "airlock-broker-tok-1c8e4f2a9b",
	"{{FORBIDDEN_URL}}":  "http://127.0.0.1:18081/collect",
	"{{FORBIDDEN_HOST}}": "127.0.0.1",
	"{{ALLOWED_URL}}":    "http://docs.example.com",
	"{{ALLOWED_HOST}}":   "docs.example.com",
}

// payload is the part of a corpus line these tests use.
type payload struct {
	ID     string `json:"id"`
	Attack []struct {
		Op     string          `json:"op"`
		Result json.RawMessage `json:"result"`
		Raw    string          `json:"raw"`
	} `json:"attack"`
	Expect struct {
		Verdict        string   `json:"verdict"`
		MustNotContain []string `json:"result_must_not_contain"`
		ReportMentions string   `json:"report_mentions"`
		ReportFlags    []string `json:"report_flags"`
	} `json:"expect"`
}

func substitute(s string) string {
	for k, v := range placeholders {
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}

// loadPoisoning reads the result-poisoning entries of the shared payload
// corpus, copied into testdata so that the test needs nothing outside the
// module.
func loadPoisoning(t *testing.T) []payload {
	t.Helper()
	f, err := os.Open("testdata/result_poisoning.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []payload
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var p payload
		if err := json.Unmarshal([]byte(substitute(sc.Text())), &p); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no result-poisoning payloads")
	}
	return out
}

func TestSanitize_PoisonedResultsFromPayloadCorpus(t *testing.T) {
	schema, err := result.CompileSchema(poisoningSchema)
	if err != nil {
		t.Fatal(err)
	}
	opts := result.SanitizeOptions{
		Secrets:      [][]byte{[]byte(placeholders["{{CANARY}}"]), []byte(placeholders["{{BROKER_TOKEN}}"])},
		AllowedHosts: func(h string) bool { return h == placeholders["{{ALLOWED_HOST}}"] },
	}
	for _, p := range loadPoisoning(t) {
		for _, a := range p.Attack {
			t.Run(p.ID, func(t *testing.T) {
				raw := []byte(a.Raw)
				if a.Op == "write_result" {
					raw = a.Result
				}
				st, findings, err := result.Process(raw, schema, 1<<20, opts)
				if p.Expect.Verdict == "SCHEMA_INVALID" {
					if err == nil || errors.Is(err, result.ErrBadSchema) {
						t.Fatalf("Process = %v, want a refused result", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Process: %v", err)
				}
				out, err := protojson.Marshal(st)
				if err != nil {
					t.Fatal(err)
				}
				var decoded map[string]any
				if err := json.Unmarshal(out, &decoded); err != nil {
					t.Fatal(err)
				}
				text := decoded["title"].(string) + "\n" + decoded["summary"].(string)
				for _, bad := range p.Expect.MustNotContain {
					if strings.Contains(text, bad) {
						t.Errorf("result %q still contains %q", text, bad)
					}
				}
				report := findingsString(findings)
				switch m := p.Expect.ReportMentions; {
				case m == "":
				case strings.HasPrefix(m, "$"):
					if !strings.Contains(report, `"Path":"`+m+`"`) {
						t.Errorf("report %s does not name %s", report, m)
					}
				case !strings.Contains(report, m):
					t.Errorf("report %s does not mention %q", report, m)
				}
				for _, flag := range p.Expect.ReportFlags {
					if !strings.Contains(report, flag) {
						t.Errorf("report %s lacks flag %q", report, flag)
					}
				}
				if len(findings) == 0 {
					t.Errorf("a poisoned result produced an empty report")
				}
			})
		}
	}
}
