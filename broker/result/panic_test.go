package result

import (
	"errors"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock/airlock/broker/result/internal/detect"
)

// A panic in processing a result, on the caller's goroutine or on the
// detector's, ends that result with a PanicError, never the process.
func TestProcess_RecoversPanics(t *testing.T) {
	schema, err := CompileSchema(`{"type":"object"}`)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("in the cleaning walk", func(t *testing.T) {
		opts := SanitizeOptions{AllowedHosts: func(string) bool { panic("boom: attacker text") }}
		st, findings, err := Process([]byte(`{"a":"see https://evil.example/x"}`), schema, 1<<20, opts)
		var pe *PanicError
		if !errors.As(err, &pe) || st != nil || findings != nil {
			t.Fatalf("Process = %v, %v, %v; want a PanicError and nothing else", st, findings, err)
		}
		if strings.Contains(err.Error(), "attacker") {
			t.Errorf("the error quotes the panic: %q", err)
		}
	})
	t.Run("in the detector's goroutines", func(t *testing.T) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
		defer func(f func(string) detect.Category) { scanText = f }(scanText)
		scanText = func(string) detect.Category { panic("detector boom") }
		big := `{"a":"` + strings.Repeat("plain words here ", 4<<10) + `"}`
		_, _, err := Process([]byte(big), schema, 1<<20, SanitizeOptions{})
		var pe *PanicError
		if !errors.As(err, &pe) || pe.Value != "detector boom" {
			t.Fatalf("Process error %v, want the detector's panic as a PanicError", err)
		}
	})
	t.Run("with the stack it began in", func(t *testing.T) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
		defer func(f func(string) detect.Category) { scanText = f }(scanText)
		// Only a detector goroutine panics; the caller's goroutine, which
		// scans what is left once its walk is done, waits for that panic,
		// so that a chunk is left for the detectors.
		detectorPanicked := make(chan struct{})
		var once sync.Once
		scanText = func(string) detect.Category {
			if strings.Contains(string(debug.Stack()), "reportFlags") {
				select {
				case <-detectorPanicked:
				case <-time.After(10 * time.Second):
				}
				return 0
			}
			once.Do(func() { close(detectorPanicked) })
			panic("detector boom")
		}
		words := strings.Repeat("plain words here ", 2*flagChunk/17)
		big := `{"a":"` + words + `","b":"` + words + ` too"}`
		_, _, err := Process([]byte(big), schema, 1<<20, SanitizeOptions{})
		var pe *PanicError
		if !errors.As(err, &pe) || pe.Value != "detector boom" {
			t.Fatalf("Process error %v, want the detector's panic as a PanicError", err)
		}
		// The detector goroutine's stack, where the panic began, not the
		// caller's, where it was raised again.
		if st := string(pe.Stack); !strings.Contains(st, "(*flagSet).work") || strings.Contains(st, "reportFlags") {
			t.Errorf("stack is not the detector's:\n%s", st)
		}
	})
}
