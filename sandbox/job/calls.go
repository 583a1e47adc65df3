package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Limits of the run task's calls param.
const (
	// MaxCalls is the most tool calls one run task makes.
	MaxCalls = 64
	// MaxCallsParamBytes caps the calls param.
	MaxCallsParamBytes = 4 << 10
	// MaxCommandLineBytes caps a command line, as the gateway and the
	// broker's matcher do.
	MaxCommandLineBytes = 16 << 10
)

// The tools a run call may name.
const (
	CallExec  = "exec"
	CallRead  = "read"
	CallWrite = "write"
	CallEdit  = "edit"
	CallFetch = "fetch"
)

// Call is one parsed entry of the run task's calls param.
type Call struct {
	Tool string
	Argv []string
	// Command is a command line, sent instead of Argv for the broker to
	// parse, decide as a whole and run command by command.
	Command string
	// Target is the path or URL the gateway is asked about.
	Target   string
	Content  string
	Old, New string
}

// callObject is the JSON form of every call but an argv: a command line,
// or another tool. A field missing is told apart from an empty one, since
// writing an empty file is a call but writing a missing content is a
// mistake.
type callObject struct {
	Command *string `json:"command"`
	Tool    string  `json:"tool"`
	Path    *string `json:"path"`
	Content *string `json:"content"`
	Old     *string `json:"old"`
	New     *string `json:"new"`
	URL     *string `json:"url"`
}

// ParseCalls reads the calls param: a JSON list whose entries are argv
// arrays (exec), {"command": line} objects (exec of a command line), or
// objects naming another tool and exactly its fields.
func ParseCalls(raw string) ([]Call, error) {
	if len(raw) > MaxCallsParamBytes {
		return nil, fmt.Errorf("%w: calls is over %d bytes", ErrBadParam, MaxCallsParamBytes)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal([]byte(raw), &entries); err != nil {
		return nil, fmt.Errorf("%w: calls: want a JSON list of argv arrays and tool objects: %v", ErrBadParam, err)
	}
	if len(entries) == 0 || len(entries) > MaxCalls {
		return nil, fmt.Errorf("%w: calls: want 1 to %d calls, got %d", ErrBadParam, MaxCalls, len(entries))
	}
	calls := make([]Call, 0, len(entries))
	for i, e := range entries {
		c, err := parseCall(e)
		if err != nil {
			return nil, fmt.Errorf("%w: calls[%d]: %v", ErrBadParam, i, err)
		}
		calls = append(calls, c)
	}
	return calls, nil
}

func parseCall(e json.RawMessage) (Call, error) {
	e = bytes.TrimLeft(e, " \t\r\n")
	if len(e) > 0 && e[0] == '[' {
		var argv []string
		if err := json.Unmarshal(e, &argv); err != nil {
			return Call{}, fmt.Errorf("want an argv array of strings: %v", err)
		}
		if len(argv) == 0 {
			return Call{}, errors.New("an empty argv")
		}
		return Call{Tool: CallExec, Argv: argv}, nil
	}
	if len(e) == 0 || e[0] != '{' {
		return Call{}, errors.New("want an argv array or a tool object")
	}
	dec := json.NewDecoder(bytes.NewReader(e))
	dec.DisallowUnknownFields()
	var o callObject
	if err := dec.Decode(&o); err != nil {
		return Call{}, err
	}
	if o.Command != nil {
		// Parsed and judged by the broker alone: what the agent would make
		// of it is beside the point.
		if o.Tool != "" || o.Path != nil || o.Content != nil || o.Old != nil || o.New != nil || o.URL != nil {
			return Call{}, errors.New("a command line takes exactly command")
		}
		switch {
		case *o.Command == "":
			return Call{}, errors.New("an empty command")
		case len(*o.Command) > MaxCommandLineBytes:
			return Call{}, fmt.Errorf("command is over %d bytes", MaxCommandLineBytes)
		}
		return Call{Tool: CallExec, Command: *o.Command}, nil
	}
	// Each tool takes exactly its own fields, so that a call never means
	// something other than it says.
	has := map[string]bool{"path": o.Path != nil, "content": o.Content != nil, "old": o.Old != nil, "new": o.New != nil, "url": o.URL != nil}
	want := map[string][]string{
		CallRead:  {"path"},
		CallWrite: {"path", "content"},
		CallEdit:  {"path", "old", "new"},
		CallFetch: {"url"},
	}[o.Tool]
	if want == nil {
		return Call{}, fmt.Errorf("unknown tool %q (want read, write, edit or fetch, or an argv array or a command for exec)", o.Tool)
	}
	for _, field := range []string{"path", "content", "old", "new", "url"} {
		if has[field] != slices.Contains(want, field) {
			return Call{}, fmt.Errorf("%s takes exactly %s", o.Tool, strings.Join(want, ", "))
		}
	}
	c := Call{Tool: o.Tool}
	switch o.Tool {
	case CallFetch:
		c.Target = *o.URL
	default:
		c.Target = *o.Path
	}
	if c.Target == "" {
		return Call{}, fmt.Errorf("%s: an empty %s", o.Tool, want[0])
	}
	if o.Content != nil {
		c.Content = *o.Content
	}
	if o.Old != nil {
		if *o.Old == "" {
			return Call{}, errors.New("edit: old must not be empty")
		}
		c.Old, c.New = *o.Old, *o.New
	}
	return c, nil
}
