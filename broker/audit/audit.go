// Package audit writes the broker's audit log: one JSON line per job, with
// what ops need to answer "what ran, under which policy, and what came of
// it". It never holds the job's content or raw output.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Record is one job's audit entry.
type Record struct {
	Time        time.Time         `json:"time"`
	JobID       string            `json:"jobId"`
	Profile     string            `json:"profile"`
	PolicyHash  string            `json:"policyHash"`
	Image       string            `json:"image,omitempty"`
	ImageDigest string            `json:"imageDigest,omitempty"`
	Task        string            `json:"task"`
	Labels      map[string]string `json:"labels,omitempty"`
	Verdict     string            `json:"verdict"`
	Message     string            `json:"message,omitempty"`
	ExitCode    int               `json:"exitCode"`
	WallMillis  int64             `json:"wallMs"`
	MemoryPeak  int64             `json:"memoryPeakBytes,omitempty"`
	OutputBytes int64             `json:"outputBytes"`
	// Findings counts the sanitizer's changes by kind.
	Findings map[string]int `json:"findings,omitempty"`
	// EgressAllowed and EgressDenied count the job's egress attempts.
	EgressAllowed int `json:"egressAllowed"`
	EgressDenied  int `json:"egressDenied"`
	// Logs is the task's stdout and stderr, capped and sanitized by the
	// caller before it is recorded.
	Logs string `json:"logs,omitempty"`
}

// Log appends records to a writer, one JSON document per line.
type Log struct {
	mu sync.Mutex
	w  io.Writer
	c  io.Closer
}

// Open appends to the file at path, creating it with mode 0600.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &Log{w: f, c: f}, nil
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
	_, err = l.w.Write(append(b, '\n'))
	return err
}

// Close closes the underlying file, if Open made one.
func (l *Log) Close() error {
	if l.c == nil {
		return nil
	}
	return l.c.Close()
}
