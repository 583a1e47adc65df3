package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/airlock/airlock/sandbox/job"
)

// ErrUnknownTask is returned, wrapped, for a task this agent does not know.
var ErrUnknownTask = errors.New("unknown task")

// ErrBadParam is returned, wrapped, for a missing or malformed task param;
// it is the broker's, which refuses the same values at the door.
var ErrBadParam = job.ErrBadParam

// Output caps. They keep a result well under the broker's output limit even
// when the content is at MaxContentBytes.
const (
	// MaxTextBytes caps extract_text's text, cut at a rune boundary.
	MaxTextBytes = 256 << 10
	// MaxTitleRunes caps every title.
	MaxTitleRunes = 500
	// MaxSummaryRunes caps summarize's summary.
	MaxSummaryRunes = 1000
	// MaxSentences is the largest "sentences" param summarize accepts.
	MaxSentences = job.MaxSentences
	// MaxLinks caps extract_links; later links are dropped.
	MaxLinks = 1000
	// MaxURLBytes is the longest URL extract_links reports (longer ones
	// are dropped, not cut, since a cut URL points somewhere else) and
	// fetch takes.
	MaxURLBytes = job.MaxURLBytes
	// MaxLinkTextRunes caps each link's text.
	MaxLinkTextRunes = 200
	// MaxLabels is the most labels classify accepts.
	MaxLabels = job.MaxLabels
	// MaxLabelBytes is the longest label classify accepts.
	MaxLabelBytes = job.MaxLabelBytes
)

// TextResult is the result of extract_text.
type TextResult struct {
	// Title is the first content item's title.
	Title string `json:"title"`
	// Text is the visible text, one block per line, capped at MaxTextBytes.
	Text string `json:"text"`
}

// LinksResult is the result of extract_links.
type LinksResult struct {
	// Links are in document order, content item by item; never null.
	Links []Link `json:"links"`
}

// Link is one a[href], with its URL resolved against the content's source.
type Link struct {
	// URL is the resolved href, or the raw href when there is no base.
	URL string `json:"url"`
	// Text is the link's visible text.
	Text string `json:"text"`
}

// SummaryResult is the result of summarize.
type SummaryResult struct {
	// Title is <title>, else the first h1, else the first line.
	Title string `json:"title"`
	// Summary is the first sentences of the visible text, space-joined.
	Summary string `json:"summary"`
}

// ClassifyResult is the result of classify: the given labels found in the
// text, in the order they were given.
type ClassifyResult struct {
	// Labels are spelled as given; never null.
	Labels []string `json:"labels"`
}

// task computes a result from the job's params and its parsed content.
type task func(params map[string]string, docs []document) (any, error)

// tasks is the agent's whole vocabulary; anything else is refused.
var tasks = map[string]task{
	"extract_text":  extractText,
	"extract_links": extractLinks,
	"summarize":     summarize,
	"classify":      classify,
	"fetch":         fetchPage,
}

// Tasks lists the task names Run accepts, sorted.
func Tasks() []string {
	names := make([]string, 0, len(tasks)+len(jobTasks)+1)
	names = append(names, TaskAgent)
	for name := range tasks {
		names = append(names, name)
	}
	for name := range jobTasks {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Run carries out job's task over its content, read through readContent,
// and returns the value to write as result.json.
func Run(job Job, readContent func(name string) ([]byte, error)) (any, error) {
	if job.Task == TaskAgent {
		return runAgent(job, readContent)
	}
	if jt, ok := jobTasks[job.Task]; ok {
		// It reads no content: what it reads, it reads through the tools.
		return jt(job)
	}
	t, ok := tasks[job.Task]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownTask, job.Task, strings.Join(Tasks(), ", "))
	}
	docs := make([]document, 0, len(job.Content))
	for _, c := range job.Content {
		if err := checkContentName(c.Name); err != nil {
			return nil, err
		}
		data, err := readContent(c.Name)
		if err != nil {
			return nil, fmt.Errorf("content %q: %w", c.Name, err)
		}
		if len(data) > MaxContentBytes {
			return nil, fmt.Errorf("content %q: %w: over %d bytes", c.Name, ErrTooLarge, MaxContentBytes)
		}
		doc, err := parseContent(data, c)
		if err != nil {
			return nil, fmt.Errorf("content %q: %w", c.Name, err)
		}
		docs = append(docs, doc)
	}
	return t(job.Params, docs)
}

// checkContentName accepts a plain file name only, so a name cannot reach
// outside the content directory whatever reader is plugged in.
func checkContentName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("%w: content name %q is not a plain file name", ErrBadJob, name)
	}
	return nil
}

func extractText(_ map[string]string, docs []document) (any, error) {
	return TextResult{Title: title(docs), Text: truncateBytes(strings.Join(allLines(docs), "\n"), MaxTextBytes)}, nil
}

func extractLinks(_ map[string]string, docs []document) (any, error) {
	links := []Link{}
	for _, d := range docs {
		for _, l := range d.links {
			if len(links) == MaxLinks {
				return LinksResult{Links: links}, nil
			}
			links = append(links, l)
		}
	}
	return LinksResult{Links: links}, nil
}

func summarize(params map[string]string, docs []document) (any, error) {
	n := job.DefaultSentences
	if s, ok := params["sentences"]; ok {
		v, err := job.ParseSentences(s)
		if err != nil {
			return nil, err
		}
		n = v
	}
	return SummaryResult{
		Title:   title(docs),
		Summary: truncateRunes(strings.Join(firstSentences(allLines(docs), n), " "), MaxSummaryRunes),
	}, nil
}

func classify(params map[string]string, docs []document) (any, error) {
	labels, err := parseLabels(params["labels"])
	if err != nil {
		return nil, err
	}
	phrases := make([][]string, len(labels))
	for i, l := range labels {
		phrases[i] = tokenize(l)
	}
	m := newPhraseMatcher(phrases)
	for _, line := range allLines(docs) {
		m.feed(line)
	}
	found := []string{}
	for i, l := range labels {
		if m.found[i] {
			found = append(found, l)
		}
	}
	return ClassifyResult{Labels: found}, nil
}

// parseLabels splits the comma-separated labels param.
func parseLabels(param string) ([]string, error) { return job.ParseLabels(param) }

// title is the first document's title: combined content is read as one
// piece whose first item leads.
func title(docs []document) string {
	if len(docs) == 0 {
		return ""
	}
	return truncateRunes(docs[0].title(), MaxTitleRunes)
}

func allLines(docs []document) []string {
	var lines []string
	for _, d := range docs {
		lines = append(lines, d.lines...)
	}
	return lines
}
