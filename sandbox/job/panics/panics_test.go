package panics

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// The value is logged quoted, so that it cannot forge a line or carry an
// escape, and cut at MaxValueBytes; the stack given is logged as is.
func TestLog_QuotesAndCapsTheValue(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	value := "boom\n\x1b[31mforged line " + strings.Repeat("x", 2*MaxValueBytes)
	Log(log, "job panicked", value, []byte("the stack"), "job", "j1")

	got := buf.String()
	if strings.Count(got, "\n") != 1 || strings.Contains(got, "\x1b") {
		t.Errorf("not one clean line: %q", got)
	}
	want := strconv.Quote(value[:MaxValueBytes])
	var rec struct{ Msg, Job, Panic, Stack string }
	if err := json.Unmarshal([]byte(got), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Msg != "job panicked" || rec.Job != "j1" || rec.Panic != want || rec.Stack != "the stack" {
		t.Errorf("record = %+v, want the value %s and the stack given", rec, want[:20])
	}
}

// Taken in the deferred function that recovered, the stack still shows
// the function that panicked.
func TestLog_StackTakenWhereRecoveredShowsTheOrigin(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	func() {
		defer func() {
			if r := recover(); r != nil {
				Log(log, "panicked", r, debug.Stack())
			}
		}()
		panicsHere()
	}()
	if !strings.Contains(buf.String(), "panics.panicsHere") {
		t.Errorf("the stack does not name the panicking function:\n%s", buf.String())
	}
}

func panicsHere() { panic("here") }
