// Package audit writes the broker's audit log: one JSON line per job, with
// what ops need to answer "what ran, under which policy, and what came of
// it". It never holds the job's content or raw output.
package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Record is one job's audit entry.
type Record struct {
	Time       time.Time `json:"time"`
	JobID      string    `json:"jobId"`
	Owner      string    `json:"owner,omitempty"`
	Profile    string    `json:"profile"`
	PolicyHash string    `json:"policyHash"`
	// Runtime is the OCI runtime the job's sandbox ran on.
	Runtime     string            `json:"runtime"`
	Image       string            `json:"image,omitempty"`
	ImageDigest string            `json:"imageDigest,omitempty"`
	Task        string            `json:"task"`
	Labels      map[string]string `json:"labels,omitempty"`
	Verdict     string            `json:"verdict"`
	Message     string            `json:"message,omitempty"`
	ExitCode    int               `json:"exitCode"`
	WallMillis  int64             `json:"wallMs"`
	MemoryPeak  int64             `json:"memoryPeakBytes,omitempty"`
	CPUMillis   int64             `json:"cpuMs"`
	OutputBytes int64             `json:"outputBytes"`
	// Findings counts the sanitizer's changes by kind.
	Findings map[string]int `json:"findings,omitempty"`
	// EgressAllowed and EgressDenied count the job's egress attempts.
	EgressAllowed int `json:"egressAllowed"`
	EgressDenied  int `json:"egressDenied"`
	// EgressDeniedPackets is what the job's firewall dropped: direct
	// egress around the proxy.
	EgressDeniedPackets int64 `json:"egressDeniedPackets,omitempty"`
	// Exec counts the commands the job asked to run, by decision
	// (EXEC_VERDICT_ALLOWED, EXEC_VERDICT_FALLBACK, ...), and the requests
	// its tool gateway refused outright (GATEWAY_REFUSED_WRONG_CAPABILITY,
	// GATEWAY_REFUSED_RATE_LIMITED, ...).
	Exec map[string]int `json:"exec,omitempty"`
	// Logs is the task's stdout and stderr, capped and sanitized by the
	// caller before it is recorded.
	Logs string `json:"logs,omitempty"`
	// Model is the model an agent job used, with the version of the
	// system prompt it was given.
	Model         string `json:"model,omitempty"`
	PromptVersion string `json:"promptVersion,omitempty"`
	// ModelTurns, InputTokens and OutputTokens are what the egress proxy
	// counted of the job's model calls; ToolCalls what the broker decided.
	ModelTurns   int   `json:"modelTurns,omitempty"`
	InputTokens  int64 `json:"inputTokens,omitempty"`
	OutputTokens int64 `json:"outputTokens,omitempty"`
	ToolCalls    int   `json:"toolCalls,omitempty"`
}

// Log appends records to a writer, one JSON document per line.
type Log struct {
	mu sync.Mutex
	w  io.Writer
	c  io.Closer
	f  *os.File
}

// Open appends to the file at path, creating it with mode 0600.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &Log{w: f, c: f, f: f}, nil
}

// New writes records to w.
func New(w io.Writer) *Log { return &Log{w: w} }

// Write appends one record. A write failure is returned so the caller can
// log it; the job's response does not depend on it.
func (l *Log) Write(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(append(b, '\n')); err != nil {
		return err
	}
	// Synced per record: an audit trail that loses its last entries on a
	// crash loses exactly the ones that explain it.
	if l.f != nil {
		return l.f.Sync()
	}
	return nil
}

// Read returns the records in r, oldest first, skipping lines that do not
// parse (a torn last line after a crash).
func Read(r io.Reader) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var rec Record
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out, sc.Err()
}

// Close closes the underlying file, if Open made one.
func (l *Log) Close() error {
	if l.c == nil {
		return nil
	}
	return l.c.Close()
}
