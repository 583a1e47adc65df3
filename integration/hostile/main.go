// Command hostile is the sub-agent of the test-only `hostile` image. It does
// whatever job.json's task names, including what a compromised agent would
// try, and records what happened in result.json so the integration suite can
// assert that the sandbox held. It is test data, never shipped.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/airlock/airlock/sandbox/agent"
)

// op carries out one task. It returns the value to write as result.json, or
// nil when it has handled the result file itself.
type op func(params map[string]string) (any, error)

// ops is the vocabulary; add an entry to teach the image a new attack.
var ops = map[string]op{
	"sleep":          sleep,
	"env":            env,
	"write_rootfs":   writeRootfs,
	"echo":           echo,
	"exit":           exit,
	"big_output":     bigOutput,
	"symlink_result": symlinkResult,
}

func main() {
	os.Exit(run())
}

func run() int {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		childSleep()
		return 0
	}
	data, err := os.ReadFile(agent.JobFile)
	if err != nil {
		return fail(2, err)
	}
	var job agent.Job
	if err := json.Unmarshal(data, &job); err != nil {
		return fail(2, err)
	}
	o, ok := ops[job.Task]
	if !ok {
		return fail(2, fmt.Errorf("unknown op %q", job.Task))
	}
	result, err := o(job.Params)
	if err != nil {
		return fail(1, err)
	}
	if result == nil {
		return 0
	}
	out, err := json.Marshal(result)
	if err != nil {
		return fail(1, err)
	}
	if err := os.WriteFile(agent.ResultFile, out, 0o644); err != nil {
		return fail(1, err)
	}
	return 0
}

func fail(code int, err error) int {
	fmt.Fprintf(os.Stderr, "hostile: %v\n", err)
	return code
}

// intParam reads an integer param, with def when it is absent.
func intParam(params map[string]string, key string, def int64) (int64, error) {
	s, ok := params[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("param %s: %w", key, err)
	}
	return n, nil
}

func sleep(params map[string]string) (any, error) {
	secs, err := intParam(params, "seconds", 3600)
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Duration(secs) * time.Second)
	return map[string]bool{"slept": true}, nil
}

func env(map[string]string) (any, error) {
	return map[string][]string{"env": os.Environ()}, nil
}

// attempt is one write the sandbox should (or, for /tmp, may) allow.
type attempt struct {
	Path  string `json:"path"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

func writeRootfs(map[string]string) (any, error) {
	try := func(path string, flag int) attempt {
		f, err := os.OpenFile(path, flag, 0o644)
		if err == nil {
			_, err = f.Write([]byte("pwned\n"))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		a := attempt{Path: path, OK: err == nil}
		if err != nil {
			a.Error = err.Error()
		}
		return a
	}
	const create = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	return map[string][]attempt{"attempts": {
		try("/pwned", create),
		try("/etc/pwned", create),
		// No O_TRUNC: a sandbox that wrongly allows this should not also
		// break the image for the tests that run after.
		try("/airlock-agent", os.O_WRONLY),
		try("/tmp/ok", create),
	}}, nil
}

func echo(params map[string]string) (any, error) {
	if err := os.WriteFile(agent.ResultFile, []byte(params["result"]), 0o644); err != nil {
		return nil, err
	}
	return nil, nil
}

func exit(params map[string]string) (any, error) {
	code, err := intParam(params, "code", 0)
	if err != nil {
		return nil, err
	}
	os.Exit(int(code))
	return nil, nil
}

// bigOutput writes a JSON string of exactly the requested size (at least
// the two quotes) as result.json.
func bigOutput(params map[string]string) (any, error) {
	n, err := intParam(params, "bytes", 1<<20)
	if err != nil {
		return nil, err
	}
	_, err = writeJSONString(agent.ResultFile, n)
	return nil, err
}

// writeJSONString writes a JSON string of exactly n bytes (at least the two
// quotes) to path, streamed so this process's memory is not what fails
// first. It returns how many bytes it wrote.
func writeJSONString(path string, n int64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var written int64
	write := func(b []byte) error {
		k, err := f.Write(b)
		written += int64(k)
		return err
	}
	if err := write([]byte(`"`)); err != nil {
		return written, err
	}
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'a'
	}
	for left := n - 2; left > 0; {
		k := min(left, int64(len(chunk)))
		if err := write(chunk[:k]); err != nil {
			return written, err
		}
		left -= k
	}
	if err := write([]byte(`"`)); err != nil {
		return written, err
	}
	return written, f.Close()
}

func symlinkResult(map[string]string) (any, error) {
	return nil, os.Symlink("/etc/passwd", agent.ResultFile)
}
