package modelserver_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/airlock/airlock/integration/modelserver"
)

const testKey = "sk-test-0123456789"

// startTLS starts a server with TLS and testKey, and returns it with a
// client that trusts its CA and nothing else.
func startTLS(t *testing.T, scripts map[string]modelserver.Script) (*modelserver.Server, *http.Client) {
	t.Helper()
	srv, err := modelserver.Start(modelserver.Options{TLS: true, Key: testKey, Scripts: scripts})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CAPEM()) {
		t.Fatal("CAPEM holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	client := &http.Client{Transport: tr}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv, client
}

// turnRecorder is a script that keeps the last Turn it saw.
type turnRecorder struct {
	mu    sync.Mutex
	last  *modelserver.Turn
	reply func(*modelserver.Turn) modelserver.Reply
}

func (r *turnRecorder) script(t *modelserver.Turn) modelserver.Reply {
	r.mu.Lock()
	r.last = t
	r.mu.Unlock()
	return r.reply(t)
}

func (r *turnRecorder) turn() *modelserver.Turn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// compileSchema compiles a JSON Schema given as a string.
func compileSchema(t *testing.T, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// validateJSON checks that data, a JSON document, fits s.
func validateJSON(t *testing.T, s *jsonschema.Schema, data []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not JSON: %v: %s", err, data)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("%s does not fit the schema: %v", data, err)
	}
}

// asMap decodes a JSON object for comparisons.
func asMap(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, data)
	}
	return m
}

// replyText has escapes, runes of several widths and is longer than one
// streamed delta, so a client has to put it together correctly.
const replyText = "Hello from the stand-in: \"quotes\", a back\\slash, ünïcödé 🚀, <html> & a newline\nend."

// lookupArgs are the arguments of the "tool" model's call, as a client
// decodes them.
var lookupArgs = map[string]any{"query": "ünïcödé \"q\"", "limit": 3.0, "nested": map[string]any{"ok": true}}

// sdkScripts are the models the SDK tests ask, the same for both APIs.
func sdkScripts() map[string]modelserver.Script {
	return map[string]modelserver.Script{
		"text": func(*modelserver.Turn) modelserver.Reply {
			return modelserver.Reply{Text: replyText, InputTokens: 42, OutputTokens: 17}
		},
		"tool": func(*modelserver.Turn) modelserver.Reply {
			r := modelserver.Call("lookup", lookupArgs)
			r.Text = "Let me look."
			return r
		},
		"answer": func(t *modelserver.Turn) modelserver.Reply {
			return modelserver.Answer(t, modelserver.Fill(t.Schema, "the page is about "+t.Messages[len(t.Messages)-1].Text))
		},
	}
}
