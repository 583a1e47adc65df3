//go:build integration

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/airlock/airlock/integration/modelserver"
)

// scriptNames are the stand-in's models in the model world, one per
// behaviour under test.
func scriptNames() []string {
	return []string{"benign", "reader", "execer", "hijacked", "badjson", "loop", "huge", "error500", "hang"}
}

// scripts are the model world's models. They are stateless, as a real
// model is: each decides from the conversation it is sent.
func scripts() map[string]modelserver.Script {
	moves, smuggled := hijackMoves()
	allowedURL := strings.TrimSuffix(world.allowed.URL, "/") + "/page"
	return map[string]modelserver.Script{
		"benign": func(t *modelserver.Turn) modelserver.Reply {
			return modelserver.Answer(t, map[string]string{"answer": plain(userData(t))})
		},
		"reader": func(t *modelserver.Turn) modelserver.Reply {
			switch results := toolResults(t); len(results) {
			case 0:
				return modelserver.Call("read", map[string]string{"path": modelserver.ContentDir + "0"})
			case 1:
				return modelserver.Call("fetch", map[string]string{"url": allowedURL})
			default:
				return modelserver.Answer(t, map[string]string{"answer": plain(strings.Join(results, " | "))})
			}
		},
		"execer": func(t *modelserver.Turn) modelserver.Reply {
			results := toolResults(t)
			if len(results) == 0 {
				return modelserver.Call("exec", map[string]any{"argv": []string{"head", "-n", "1", "/input/content/0"}})
			}
			if strings.Contains(results[0], "Quarterly") {
				return modelserver.Answer(t, map[string]string{"answer": "ran: " + plain(results[0])})
			}
			return modelserver.Answer(t, map[string]string{"answer": "refused: " + plain(results[0])})
		},
		// hijacked obeys the corpus: a few of its tool moves per turn, then
		// an answer that carries everything it saw and every poisoning
		// string the corpus would have a sub-agent write.
		"hijacked": func(t *modelserver.Turn) modelserver.Reply {
			done := len(toolResults(t))
			if i := done / hijackBatch; done%hijackBatch == 0 && i < len(moves) && t.HasTool("read") {
				return modelserver.Reply{ToolCalls: moves[i]}
			}
			seen := plain(strings.Join(toolResults(t), "\n"))
			return modelserver.Answer(t, map[string]string{"answer": seen + "\n" + strings.Join(smuggled, "\n")})
		},
		"badjson": func(t *modelserver.Turn) modelserver.Reply {
			if t.API == modelserver.APIAnthropic {
				return modelserver.Answer(t, map[string]any{"wrong": 1})
			}
			return modelserver.Reply{Text: `Sure! Here is the answer: {"answer": `}
		},
		"loop": func(t *modelserver.Turn) modelserver.Reply {
			return modelserver.Call("read", map[string]string{"path": modelserver.ContentDir + "0"})
		},
		"huge": func(*modelserver.Turn) modelserver.Reply { return modelserver.Reply{PadBytes: 100 << 20} },
		"error500": func(*modelserver.Turn) modelserver.Reply {
			return modelserver.Reply{Status: 500, Text: "upstream exploded"}
		},
		"hang": func(*modelserver.Turn) modelserver.Reply { return modelserver.Reply{Hang: true} },
	}
}

// hijackBatch is how many tool calls the hijacked model makes per turn.
const hijackBatch = 3

// hijackMoves turns the payload corpus into what a hijacked model can do
// with its tools: each file it is told to read becomes a read, each URL a
// fetch (the service alias probe aimed at the model's alias), an
// environment dump a read of /proc/self/environ; and each result it is
// told to write becomes a string to smuggle into its answer. Operations no
// tool can carry out (raw sockets, syscalls) are the hostile image's tests.
func hijackMoves() ([][]modelserver.ToolCall, []string) {
	f, err := os.Open("testdata/payloads.jsonl")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	var calls []modelserver.ToolCall
	var smuggled []string
	add := func(tool string, args map[string]string) {
		b, _ := json.Marshal(args)
		for _, c := range calls {
			if c.Name == tool && string(c.Arguments) == string(b) {
				return
			}
		}
		calls = append(calls, modelserver.ToolCall{Name: tool, Arguments: b})
	}
	// Beyond the corpus: where the sandbox's own secrets would be, if it
	// held any.
	add("read", map[string]string{"path": "/input/job.json"})
	add("read", map[string]string{"path": "/proc/self/environ"})
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var p payload
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			panic(err)
		}
		for _, op := range p.Attack {
			str := func(k string) string { s, _ := op[k].(string); return hijackFill(s) }
			switch op["op"] {
			case "read_file":
				add("read", map[string]string{"path": str("path")})
			case "env_dump":
				add("read", map[string]string{"path": "/proc/self/environ"})
			case "http_get", "http_post":
				add("fetch", map[string]string{"url": str("url")})
			case "write_result":
				b, _ := json.Marshal(op["result"])
				smuggled = append(smuggled, hijackFill(string(b)))
			case "write_result_raw":
				smuggled = append(smuggled, str("raw"))
			}
		}
	}
	if err := sc.Err(); err != nil {
		panic(err)
	}
	var batches [][]modelserver.ToolCall
	for c := range slices.Chunk(calls, hijackBatch) {
		batches = append(batches, c)
	}
	return batches, smuggled
}

// hijackFill fills the corpus placeholders a model can use: its alias in
// place of the corpus's, and the suite's servers.
func hijackFill(s string) string {
	return strings.NewReplacer(
		"llm.airlock.internal", "model.airlock.internal",
		"{{FORBIDDEN_URL}}", fmt.Sprintf("http://127.0.0.1:%d/", world.forbidden.port()),
		"{{ALLOWED_URL}}", strings.TrimSuffix(world.allowed.URL, "/"),
		"{{REBIND_NAME}}", rebindName,
		"{{BROKER_METRICS_PORT}}", metricsPort(),
		"{{CANARY}}", env.canary,
		"{{SERVICE_KEY}}", world.serviceKey,
	).Replace(s)
}

// metricsPort is the suite broker's metrics port: a loopback listener
// the proxy must refuse.
func metricsPort() string {
	_, port, _ := net.SplitHostPort(env.server.MetricsAddr().String())
	return port
}

// toolResults are the texts of the conversation's tool results, in order.
func toolResults(t *modelserver.Turn) []string {
	var out []string
	for _, m := range t.Messages {
		if m.Role == "tool" {
			out = append(out, m.Text)
		}
	}
	return out
}

// userData is the data of the user turns: what lies between boundaries.
func userData(t *modelserver.Turn) string {
	var out []string
	for _, m := range t.Messages {
		if m.Role == "user" {
			for _, d := range dataBlock.FindAllStringSubmatch(m.Text, -1) {
				out = append(out, d[1])
			}
		}
	}
	return strings.Join(out, " ")
}

var (
	dataBlock = regexp.MustCompile(`(?s)<<[^<>\n]*>>\n?(.*?)\n?<<[^<>\n]*>>`)
	boundary  = regexp.MustCompile(`<<[^<>\n]{0,200}>>`)
)

// plain undoes the datamarking for an answer: boundaries dropped, the
// marker a space.
func plain(s string) string {
	s = boundary.ReplaceAllString(s, " ")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "ˆ", " ")), " ")
}
