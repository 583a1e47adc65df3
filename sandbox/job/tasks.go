package job

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// ErrBadTask means a task the images do not have, or params its task does
// not take: the caller's mistake, refused before a sandbox is made.
var ErrBadTask = errors.New("bad task")

// ErrBadParam is an ErrBadTask about one param's value; the agent returns
// it too, so that a value the broker let through is refused the same way.
var ErrBadParam = fmt.Errorf("%w param", ErrBadTask)

// TaskError is CheckTask's refusal. Its message is for the caller and
// carries no sentinel's words.
type TaskError struct {
	// Param is the spec's param at fault; empty for the task's name or a
	// param the task does not take.
	Param string
	msg   string
	err   error
}

func (e *TaskError) Error() string { return e.msg }
func (e *TaskError) Unwrap() error { return e.err }

// MaxContentItemBytes caps each content item: the reference agent reads no
// further, so a larger item is refused at the door rather than failing
// in the sandbox.
const MaxContentItemBytes = 16 << 20

// Bounds of the reference agent's params.
const (
	// MaxSentences is the largest "sentences" summarize accepts.
	MaxSentences = 100
	// DefaultSentences is summarize's count when the param is absent.
	DefaultSentences = 3
	// MaxLabels is the most labels classify accepts.
	MaxLabels = 64
	// MaxLabelBytes is the longest label classify accepts.
	MaxLabelBytes = 100
	// MaxURLBytes is the longest URL fetch takes.
	MaxURLBytes = 2048
)

// TaskSpec is one task an image serves, as the broker checks it at the
// door.
type TaskSpec struct {
	Name string
	// Doc says what the task does, for error messages and docs.
	Doc    string
	Params []ParamSpec
	// AnyParams lets the task take params the spec does not list, for
	// images whose tasks check their own (the integration suite's hostile
	// agent). The reference agent's tasks take exactly their params.
	AnyParams bool
}

// ParamSpec is one param of a task.
type ParamSpec struct {
	Name     string
	Required bool
	// Doc says what a valid value is.
	Doc string
	// Check refuses a bad value; nil accepts any.
	Check func(string) error
}

// Reference task names. The agent task is model-driven; run makes only
// tool calls.
const (
	TaskExtractText  = "extract_text"
	TaskExtractLinks = "extract_links"
	TaskSummarize    = "summarize"
	TaskClassify     = "classify"
	TaskFetch        = "fetch"
	TaskRun          = "run"
	TaskAgent        = "agent"
)

// ReferenceTasks is the reference agent's vocabulary, the one source of
// its task names and params for the broker, the agent and the docs.
func ReferenceTasks() []TaskSpec {
	return []TaskSpec{
		{Name: TaskAgent, Doc: "a model-driven agent loop over the content, led by task.instructions"},
		{Name: TaskClassify, Doc: "which of the given labels occur in the text", Params: []ParamSpec{
			{Name: "labels", Required: true, Doc: fmt.Sprintf("a comma-separated list of 1-%d labels of at most %d bytes each", MaxLabels, MaxLabelBytes),
				Check: func(v string) error { _, err := ParseLabels(v); return err }},
		}},
		{Name: TaskExtractLinks, Doc: "the content's links, resolved"},
		{Name: TaskExtractText, Doc: "the content's title and visible text"},
		{Name: TaskFetch, Doc: "fetch a page through the egress proxy and extract its visible text", Params: []ParamSpec{
			{Name: "url", Required: true, Doc: fmt.Sprintf("an absolute http or https URL of at most %d bytes, without credentials", MaxURLBytes),
				Check: func(v string) error { _, err := ParseFetchURL(v); return err }},
		}},
		{Name: TaskRun, Doc: "tool calls through the broker's gateway, in order", Params: []ParamSpec{
			{Name: "calls", Required: true, Doc: fmt.Sprintf("a JSON list of 1-%d calls: argv arrays, {\"command\": line} or tool objects, at most %d bytes", MaxCalls, MaxCallsParamBytes),
				Check: func(v string) error { _, err := ParseCalls(v); return err }},
		}},
		{Name: TaskSummarize, Doc: "the title and the first sentences of the visible text", Params: []ParamSpec{
			{Name: "sentences", Doc: fmt.Sprintf("an integer from 1 to %d; %d when absent", MaxSentences, DefaultSentences),
				Check: func(v string) error { _, err := ParseSentences(v); return err }},
		}},
	}
}

// CheckTask refuses a task that is not in specs, a param its task does not
// take, a required param missing, and a value its check refuses. Errors
// wrap ErrBadTask and name the valid tasks or params.
func CheckTask(specs []TaskSpec, name string, params map[string]string) error {
	i := slices.IndexFunc(specs, func(s TaskSpec) bool { return s.Name == name })
	if i < 0 {
		names := make([]string, len(specs))
		for i, s := range specs {
			names[i] = s.Name
		}
		slices.Sort(names)
		return &TaskError{msg: fmt.Sprintf("no task %s; the tasks are %s", shownName(name), strings.Join(names, ", ")), err: ErrBadTask}
	}
	spec := specs[i]
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if spec.AnyParams || slices.ContainsFunc(spec.Params, func(p ParamSpec) bool { return p.Name == k }) {
			continue
		}
		return &TaskError{msg: fmt.Sprintf("task %s takes no param %s; %s", name, shownName(k), paramList(spec)), err: ErrBadTask}
	}
	for _, p := range spec.Params {
		v, ok := params[p.Name]
		if !ok {
			if p.Required {
				return &TaskError{Param: p.Name, msg: fmt.Sprintf("task %s needs param %s: %s", name, p.Name, p.Doc), err: ErrBadParam}
			}
			continue
		}
		if p.Check != nil {
			if err := p.Check(v); err != nil {
				why := strings.TrimPrefix(err.Error(), ErrBadParam.Error()+": ")
				return &TaskError{Param: p.Name, msg: fmt.Sprintf("task %s: %s", name, why), err: ErrBadParam}
			}
		}
	}
	return nil
}

// shownName quotes a name the caller sent, cut to a prefix: an error
// names it, and need not repeat kilobytes of it.
func shownName(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

func paramList(s TaskSpec) string {
	if len(s.Params) == 0 {
		return "it takes no params"
	}
	var b strings.Builder
	b.WriteString("its params are ")
	for i, p := range s.Params {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Name)
		if !p.Required {
			b.WriteString(" (optional)")
		}
		b.WriteString(": ")
		b.WriteString(p.Doc)
	}
	return b.String()
}

// ParseSentences reads summarize's sentences param.
func ParseSentences(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxSentences {
		return 0, fmt.Errorf("%w: sentences=%q: want an integer from 1 to %d", ErrBadParam, v, MaxSentences)
	}
	return n, nil
}

// ParseLabels splits classify's comma-separated labels param, dropping
// blanks and case-insensitive repeats so each label is reported at most
// once.
func ParseLabels(param string) ([]string, error) {
	var labels []string
	seen := map[string]bool{}
	for l := range strings.SplitSeq(param, ",") {
		l = strings.TrimSpace(l)
		key := strings.ToLower(l)
		if l == "" || seen[key] {
			continue
		}
		if len(l) > MaxLabelBytes {
			return nil, fmt.Errorf("%w: labels: a label is %d bytes, at most %d allowed", ErrBadParam, len(l), MaxLabelBytes)
		}
		if len(labels) == MaxLabels {
			return nil, fmt.Errorf("%w: labels: more than %d labels", ErrBadParam, MaxLabels)
		}
		seen[key] = true
		labels = append(labels, l)
	}
	if len(labels) == 0 {
		return nil, fmt.Errorf("%w: labels: want a comma-separated list of at least one label", ErrBadParam)
	}
	return labels, nil
}

// ParseFetchURL checks fetch's url param: an absolute http or https URL
// without credentials. The fragment is dropped, as a browser would.
func ParseFetchURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return nil, fmt.Errorf("%w: url is required", ErrBadParam)
	case len(raw) > MaxURLBytes:
		return nil, fmt.Errorf("%w: url is over %d bytes", ErrBadParam, MaxURLBytes)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("%w: url must be an absolute http or https URL", ErrBadParam)
	case u.User != nil:
		return nil, fmt.Errorf("%w: url must not carry credentials", ErrBadParam)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}
