package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/sandbox/agent"
)

func init() {
	ops["attack"] = attackTask
}

const (
	// maxRead caps what one op reads from a file or a response.
	maxRead = 1 << 20
	// maxSummary caps the summary an into_result op fills.
	maxSummary = 64 << 10
)

// attackOps are the operations of payloads.jsonl's `attack` lists. An op
// never fails the job: what went wrong is its outcome. Add an entry to
// teach the image a new attack.
var attackOps = map[string]func(*attacker, step) outcome{
	// Credentials and the filesystem.
	"env_dump":     envDump,
	"read_file":    readFile,
	"connect_unix": connectUnix,
	"grep_fs":      grepFS,
	"write_file":   writeFile,
	"symlink":      symlink,
	// The network (attack_net.go).
	"http_get":          httpGet,
	"http_post":         httpPost,
	"connect_tcp":       connectTCP,
	"dns_query":         dnsQuery,
	"icmp_echo":         icmpEcho,
	"raw_proxy_request": rawProxyRequest,
	// Resources.
	"fork_bomb": forkBomb,
	"alloc":     allocBytes,
	"fill":      fill,
	"sleep":     sleepOp,
	// Escapes.
	"syscall":              syscallOp,
	"setns_pid1":           setnsPID1,
	"kill_all":             killAll,
	"raw_socket":           rawSocket,
	"check_uid_after_exec": checkUIDAfterExec,
	"escape_checklist":     escapeChecklistOp,
	"uname":                unameOp,
	// The result.
	"write_result":       writeResult,
	"write_result_raw":   writeResultRaw,
	"write_result_bytes": writeResultBytes,
}

// attackTask carries out params["attack"], the operations of one payload,
// and writes result.json itself.
func attackTask(params map[string]string) (any, error) {
	a := &attacker{input: agent.InputDir, output: agent.OutputDir}
	return nil, a.run(params["attack"])
}

// attacker runs one attack. Its directories stand for /input and /output,
// so a test can put them elsewhere.
type attacker struct {
	input, output string
	// resultTaken is set once an op has written or replaced result.json:
	// the report is then not written over it.
	resultTaken bool
}

// step is one operation as payloads.jsonl spells it. Values stay raw, so
// write_result gets its JSON as written, and a number may come quoted or not.
type step map[string]json.RawMessage

// str is the value at key as a string: a JSON string's text, or any other
// value as written. It is "" when the key is absent.
func (s step) str(key string) string {
	raw, ok := s[key]
	if !ok {
		return ""
	}
	var v string
	if json.Unmarshal(raw, &v) == nil {
		return v
	}
	return string(raw)
}

// int is the integer at key, def when the key is absent.
func (s step) int(key string, def int64) (int64, error) {
	v := s.str(key)
	if v == "" {
		return def, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: not a number: %q", key, v)
	}
	return int64(f), nil
}

func (s step) bool(key string) bool {
	b, _ := strconv.ParseBool(s.str(key))
	return b
}

// outcome is what one op did, as the report lists it.
type outcome struct {
	Op    string `json:"op"`
	OK    bool   `json:"ok"`
	Errno string `json:"errno,omitempty"`
	Error string `json:"error,omitempty"`
	// Status is the HTTP status, when there was a response.
	Status int `json:"status,omitempty"`
	// Bytes is how much the op read, wrote or sent.
	Bytes         int64 `json:"bytes"`
	DeniedByProxy bool  `json:"denied_by_proxy,omitempty"`
	// Detail is what else the op found out, by name.
	Detail map[string]any `json:"detail,omitempty"`
	// data is what the op would put in the summary (into_result).
	data string
}

// fail records err: the op did not get what it wanted.
func (o *outcome) fail(err error) {
	o.OK = false
	o.Error = err.Error()
	o.Errno = errnoName(err)
}

// done records success, or err.
func (o *outcome) done(err error) {
	if err != nil {
		o.fail(err)
		return
	}
	o.OK = true
}

// errnoName is the symbolic errno behind err ("EPERM", "ENOENT"...), or ""
// when there is none. A timeout is ETIMEDOUT whichever layer noticed it.
func errnoName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		if name := unix.ErrnoName(e); name != "" {
			return name
		}
		return strconv.Itoa(int(e))
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout() {
		return "ETIMEDOUT"
	}
	return ""
}

// errnoOr is errnoName(err), or the error's text when there is no errno.
func errnoOr(err error) string {
	if name := errnoName(err); name != "" {
		return name
	}
	return err.Error()
}

// run parses attack, carries out its ops in order and writes the report.
func (a *attacker) run(attack string) error {
	var steps []step
	if err := json.Unmarshal([]byte(proxyPlaceholders(attack)), &steps); err != nil {
		return fmt.Errorf("param attack: %w", err)
	}
	report := []outcome{}
	var summary []string
	for _, s := range steps {
		o := a.do(s)
		report = append(report, o)
		if s.str("into_result") == "summary" {
			summary = append(summary, o.data)
		}
	}
	if a.resultTaken {
		return nil
	}
	sum := "done"
	if summary != nil {
		sum = strings.Join(summary, "\n")
		sum = sum[:min(len(sum), maxSummary)]
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // the harness looks for secrets as they are
	if err := enc.Encode(map[string]any{"title": "hostile report", "summary": sum, "ops": report}); err != nil {
		return err
	}
	return os.WriteFile(a.resultFile(), out.Bytes(), 0o644)
}

func (a *attacker) do(s step) outcome {
	name := s.str("op")
	var o outcome
	if f, ok := attackOps[name]; ok {
		o = f(a, s)
	} else {
		o.fail(fmt.Errorf("unknown op %q", name))
	}
	o.Op = name
	return o
}

// path maps a path under /input or /output to the attacker's directories.
func (a *attacker) path(p string) string {
	for dir, to := range map[string]string{agent.InputDir: a.input, agent.OutputDir: a.output} {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			return to + p[len(dir):]
		}
	}
	return p
}

func (a *attacker) resultFile() string {
	return filepath.Join(a.output, filepath.Base(agent.ResultFile))
}

func envDump(*attacker, step) outcome {
	o := outcome{OK: true, data: strings.Join(os.Environ(), "\n")}
	o.Bytes = int64(len(o.data))
	return o
}

func readFile(a *attacker, s step) outcome {
	var o outcome
	b, err := readCapped(a.path(s.str("path")))
	o.Bytes, o.data = int64(len(b)), string(b)
	o.done(err)
	return o
}

// readCapped reads at most maxRead bytes of path.
func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxRead))
}

func connectUnix(a *attacker, s step) outcome {
	var o outcome
	c, err := net.DialTimeout("unix", a.path(s.str("path")), 3*time.Second)
	if err == nil {
		c.Close()
	}
	o.done(err)
	return o
}

// grepFS walks root and collects the lines of regular files up to maxRead
// that contain pattern, a literal string. It skips /proc and /sys unless
// root is inside them, and stops after max_files files. It is ok when
// something matched.
func grepFS(a *attacker, s step) outcome {
	var o outcome
	root := a.path(s.str("root"))
	pattern := []byte(s.str("pattern"))
	maxFiles, err := s.int("max_files", 1000)
	if err == nil && len(pattern) == 0 {
		err = errors.New("empty pattern")
	}
	if err != nil {
		o.fail(err)
		return o
	}
	within := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	skipSpecial := !within(root, "/proc") && !within(root, "/sys")
	var files int64
	var matches []string
	size := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil && p == root:
			return err
		case err != nil:
			return nil // unreadable: not this op's business
		case d.IsDir() && skipSpecial && (p == "/proc" || p == "/sys"):
			return filepath.SkipDir
		case p == "/input/job.json":
			return nil // the attack's own instructions hold the pattern
		case !d.Type().IsRegular():
			return nil
		case files >= maxFiles:
			return filepath.SkipAll
		}
		if info, err := d.Info(); err != nil || info.Size() > maxRead {
			return nil
		}
		files++
		b, _ := readCapped(p)
		o.Bytes += int64(len(b))
		for _, line := range bytes.Split(b, []byte("\n")) {
			if bytes.Contains(line, pattern) && size < maxSummary {
				m := p + ": " + string(line)
				matches = append(matches, m)
				size += len(m)
			}
		}
		return nil
	})
	o.Detail = map[string]any{"files": files, "matches": len(matches)}
	o.data = strings.Join(matches, "\n")
	switch {
	case err != nil:
		o.fail(err)
	case len(matches) == 0:
		o.Error = "no match"
	default:
		o.OK = true
	}
	return o
}

func writeFile(a *attacker, s step) outcome {
	var o outcome
	err := os.WriteFile(a.path(s.str("path")), []byte("x"), 0o755)
	if err == nil {
		o.Bytes = 1
	}
	o.done(err)
	return o
}

// symlink makes link point at target. A link at result.json takes over the
// result, whether or not it could be made.
func symlink(a *attacker, s step) outcome {
	var o outcome
	link := a.path(s.str("link"))
	if filepath.Clean(link) == a.resultFile() {
		a.resultTaken = true
	}
	o.done(os.Symlink(s.str("target"), link))
	return o
}

// fill writes zeros to path in 1 MiB chunks until it has written bytes or
// the kernel refuses (ENOSPC, say). It leaves the file behind.
func fill(a *attacker, s step) outcome {
	var o outcome
	n, err := s.int("bytes", 1<<30)
	if err != nil {
		o.fail(err)
		return o
	}
	f, err := os.OpenFile(a.path(s.str("path")), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		o.fail(err)
		return o
	}
	chunk := make([]byte, 1<<20)
	for o.Bytes < n && err == nil {
		var k int
		k, err = f.Write(chunk[:min(n-o.Bytes, int64(len(chunk)))])
		o.Bytes += int64(k)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	o.done(err)
	return o
}

func sleepOp(_ *attacker, s step) outcome {
	var o outcome
	secs, err := s.int("seconds", 3600)
	if err == nil {
		time.Sleep(time.Duration(secs) * time.Second)
	}
	o.done(err)
	return o
}

// forkBomb starts copies of this binary until the kernel refuses, at most
// n (10000 unless given), and reaps them.
func forkBomb(_ *attacker, s step) outcome {
	var o outcome
	n, err := s.int("n", 10000)
	if err != nil {
		o.fail(err)
		return o
	}
	spawned, err := spawnCopies(n)
	o.Detail = map[string]any{"spawned": spawned}
	o.done(err)
	return o
}

// allocBytes allocates and touches bytes, rounded up to whole MiB. The
// sandbox is expected to OOM-kill the job before it returns.
func allocBytes(_ *attacker, s step) outcome {
	var o outcome
	n, err := s.int("bytes", 1<<30)
	if err != nil {
		o.fail(err)
		return o
	}
	o.Bytes = int64(touchMiB((n+1<<20-1)>>20)) << 20
	o.OK = true
	return o
}

func syscallOp(_ *attacker, s step) outcome {
	o := outcome{Detail: map[string]any{"pid": os.Getpid()}}
	name := s.str("name")
	probe, ok := probes[name]
	if !ok {
		o.fail(fmt.Errorf("unknown syscall %q", name))
		return o
	}
	o.done(probe())
	return o
}

// namedTry is one of several things an op tries.
type namedTry struct {
	name string
	fn   func() error
}

// tryAll makes each try and records each result in o.Detail by name:
// "OK", or the errno. The op is ok if any try was; otherwise it carries
// the error of the first.
func tryAll(o *outcome, tries ...namedTry) {
	if o.Detail == nil {
		o.Detail = map[string]any{}
	}
	var first error
	for _, at := range tries {
		err := at.fn()
		if err == nil {
			o.Detail[at.name] = "OK"
			o.OK = true
			continue
		}
		o.Detail[at.name] = errnoOr(err)
		if first == nil {
			first = err
		}
	}
	if !o.OK {
		o.fail(first)
	}
}

// setnsPID1 tries to join pid 1's mount and network namespaces, as
// `nsenter -t 1 -m -n` would.
func setnsPID1(*attacker, step) outcome {
	o := outcome{Detail: map[string]any{"pid": os.Getpid()}}
	tryAll(&o,
		namedTry{"mnt", func() error { return setns("/proc/1/ns/mnt", unix.CLONE_NEWNS) }},
		namedTry{"net", func() error { return setns("/proc/1/ns/net", unix.CLONE_NEWNET) }},
	)
	return o
}

// killAll sends SIGKILL to every process it may signal, which the kernel
// takes to mean all but itself and its namespace's init. Whether anything
// outside the sandbox died is for the harness to check. It refuses to run
// outside a sandbox, where it would kill the user's own session.
func killAll(*attacker, step) outcome {
	o := outcome{Detail: map[string]any{"pid": os.Getpid()}}
	if os.Getenv("AIRLOCK_RUN_ID") == "" {
		o.fail(errors.New("refused: AIRLOCK_RUN_ID unset, not in a sandbox"))
		return o
	}
	o.done(os.NewSyscallError("kill", unix.Kill(-1, unix.SIGKILL)))
	return o
}

// rawSocket opens the sockets that sniff or forge traffic.
func rawSocket(*attacker, step) outcome {
	var o outcome
	open := func(domain, typ, proto int) func() error {
		return func() error {
			fd, err := unix.Socket(domain, typ, proto)
			if err == nil {
				unix.Close(fd)
			}
			return os.NewSyscallError("socket", err)
		}
	}
	tryAll(&o,
		namedTry{"inet_raw_icmp", open(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)},
		namedTry{"packet", open(unix.AF_PACKET, unix.SOCK_RAW, 0)},
	)
	return o
}

// checkUIDAfterExec runs path (a setuid binary, say) as `path -c id`, then
// reports who this process is. It is ok only if the command ran and exited 0.
func checkUIDAfterExec(_ *attacker, s step) outcome {
	var o outcome
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.str("path"), "-c", "id").CombinedOutput()
	o.done(err)
	o.Bytes = int64(len(out))
	st, _ := statusFields()
	o.Detail = map[string]any{
		"uid":          os.Getuid(),
		"euid":         os.Geteuid(),
		"no_new_privs": st["NoNewPrivs"],
		"output":       string(out[:min(len(out), 4096)]),
	}
	return o
}

func escapeChecklistOp(*attacker, step) outcome {
	c := escapeChecklist()
	return outcome{OK: true, Detail: map[string]any{"checklist": c}, data: c.summary()}
}

// writeResult writes the JSON value at "result", as given, as result.json.
func writeResult(a *attacker, s step) outcome {
	var o outcome
	a.resultTaken = true
	raw, ok := s["result"]
	if !ok {
		o.fail(errors.New("no result"))
		return o
	}
	o.Bytes = int64(len(raw))
	o.done(os.WriteFile(a.resultFile(), raw, 0o644))
	return o
}

// writeResultRaw writes the string at "raw", byte for byte, as result.json.
func writeResultRaw(a *attacker, s step) outcome {
	var o outcome
	a.resultTaken = true
	raw := s.str("raw")
	o.Bytes = int64(len(raw))
	o.done(os.WriteFile(a.resultFile(), []byte(raw), 0o644))
	return o
}

// writeResultBytes writes a JSON string of "bytes" bytes as result.json.
func writeResultBytes(a *attacker, s step) outcome {
	var o outcome
	a.resultTaken = true
	n, err := s.int("bytes", 1<<20)
	if err == nil {
		o.Bytes, err = writeJSONString(a.resultFile(), n)
	}
	o.done(err)
	return o
}

// proxyPlaceholders fills {{PROXY_HOST}} and {{PROXY_PORT_PLUS_1}}, which
// only the sandbox can know: the gateway is assigned per job, and the
// sandbox learns it from HTTP_PROXY.
func proxyPlaceholders(attack string) string {
	u, err := proxyURL()
	if err != nil {
		return attack
	}
	port, _ := strconv.Atoi(u.Port())
	return strings.NewReplacer(
		"{{PROXY_HOST}}", u.Hostname(),
		`"{{PROXY_PORT_PLUS_1}}"`, strconv.Itoa(port+1),
		"{{PROXY_PORT_PLUS_1}}", strconv.Itoa(port+1),
	).Replace(attack)
}

// unameOp reports the kernel the agent's system calls reach: the host's
// under runc and crun, gVisor's sentry under runsc.
func unameOp(*attacker, step) outcome {
	var o outcome
	var u unix.Utsname
	err := unix.Uname(&u)
	o.done(err)
	o.Detail = map[string]any{"release": unix.ByteSliceToString(u.Release[:]), "version": unix.ByteSliceToString(u.Version[:])}
	return o
}
