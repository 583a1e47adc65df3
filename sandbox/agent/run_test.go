package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const articleSource = "https://news.example/coast/tidepools.html"

// injectionMarkers are in the article fixture only where a browser shows
// nothing: hidden elements, scripts, styles, comments, head metadata.
var injectionMarkers = []string{
	"INJECTION", "ignore previous instructions", "developer mode", "exfiltrate", "/etc/passwd", "evil.example",
}

// fixtures reads content from testdata.
func fixtures(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", name))
}

func articleJob(task string, params map[string]string) Job {
	return Job{
		ID:      "job-1",
		Task:    task,
		Params:  params,
		Content: []ContentFile{{Name: "article.html", MediaType: "text/html; charset=utf-8", Source: articleSource}},
	}
}

func run(t *testing.T, job Job) any {
	t.Helper()
	res, err := Run(job, fixtures)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func assertNoInjection(t *testing.T, fields ...string) {
	t.Helper()
	for _, f := range fields {
		for _, m := range injectionMarkers {
			if strings.Contains(strings.ToLower(f), strings.ToLower(m)) {
				t.Errorf("output carries invisible text %q:\n%s", m, f)
			}
		}
	}
}

func TestExtractText_ReturnsVisibleTextOnly(t *testing.T) {
	got := run(t, articleJob("extract_text", nil)).(TextResult)
	want := TextResult{
		Title: "Tide Pools of the North Coast",
		Text: strings.Join([]string{
			"Home About us",
			"Tide pools",
			"Tide pools form where the sea retreats at low tide. They hold anemones, crabs and small fish! Visitors should watch the waves? Yes. Always check the tide table first.",
			"Read the safety guide and the ranger notes.",
			"Sea stars",
			"Mussels",
		}, "\n"),
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	assertNoInjection(t, got.Title, got.Text)
}

func TestExtractLinks_ResolvesVisibleLinksAgainstSource(t *testing.T) {
	got := run(t, articleJob("extract_links", nil)).(LinksResult)
	want := []Link{
		{URL: "https://news.example/", Text: "Home"},
		{URL: "https://other.example/about", Text: "About us"},
		{URL: "https://news.example/coast/guide/safety.html#rules", Text: "safety guide"},
		{URL: "mailto:ranger@example.org", Text: "ranger"},
	}
	if !reflect.DeepEqual(got.Links, want) {
		t.Errorf("got  %+v\nwant %+v", got.Links, want)
	}
}

func TestExtractLinks_KeepsHrefWithoutAbsoluteSource(t *testing.T) {
	for _, source := range []string{"", "upload.html", "/coast/tidepools.html", "file-label"} {
		t.Run(source, func(t *testing.T) {
			job := articleJob("extract_links", nil)
			job.Content[0].Source = source
			got := run(t, job).(LinksResult)
			if len(got.Links) != 4 || got.Links[0].URL != "/" || got.Links[2].URL != "guide/safety.html#rules" {
				t.Errorf("links = %+v", got.Links)
			}
		})
	}
}

func TestExtractLinks_EmptyListIsNotNull(t *testing.T) {
	got := run(t, Job{Task: "extract_links", Content: []ContentFile{{Name: "plain.txt"}}}).(LinksResult)
	if got.Links == nil || len(got.Links) != 0 {
		t.Errorf("links = %#v, want empty non-nil", got.Links)
	}
}

func TestSummarize_TakesFirstSentencesOfVisibleText(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
		want   string
	}{
		{"default three", nil, "Home About us Tide pools Tide pools form where the sea retreats at low tide."},
		{"five", map[string]string{"sentences": "5"}, "Home About us Tide pools Tide pools form where the sea retreats at low tide. They hold anemones, crabs and small fish! Visitors should watch the waves?"},
		{"one", map[string]string{"sentences": "1"}, "Home About us"},
		{"more than there are", map[string]string{"sentences": "100"}, "Home About us Tide pools Tide pools form where the sea retreats at low tide. They hold anemones, crabs and small fish! Visitors should watch the waves? Yes. Always check the tide table first. Read the safety guide and the ranger notes. Sea stars Mussels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, articleJob("summarize", tt.params)).(SummaryResult)
			want := SummaryResult{Title: "Tide Pools of the North Coast", Summary: tt.want}
			if got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			assertNoInjection(t, got.Title, got.Summary)
		})
	}
}

func TestSummarize_CapsSummaryAt1000Runes(t *testing.T) {
	long := strings.Repeat("é", 3000) + "."
	job := Job{Task: "summarize", Content: []ContentFile{{Name: "long"}}}
	got := runWith(t, job, map[string]string{"long": long}).(SummaryResult)
	if n := len([]rune(got.Summary)); n != MaxSummaryRunes {
		t.Errorf("summary has %d runes, want %d", n, MaxSummaryRunes)
	}
	if n := len([]rune(got.Title)); n != MaxTitleRunes {
		t.Errorf("title has %d runes, want %d", n, MaxTitleRunes)
	}
}

func TestSummarize_TitleFallsBackToH1ThenFirstLine(t *testing.T) {
	tests := []struct {
		name, mediaType, content, want string
	}{
		{"title element", "text/html", "<title>T</title><h1>H</h1><p>P</p>", "T"},
		{"empty title uses h1", "text/html", "<title> </title><h1>H <i>one</i></h1><h1>Two</h1><p>P</p>", "H one"},
		{"hidden h1 skipped", "text/html", "<h1 hidden>Secret</h1><h1>Shown</h1>", "Shown"},
		{"empty h1 skipped", "text/html", "<h1></h1><p>P</p><h1>Later</h1>", "Later"},
		{"no heading uses first line", "text/html", "<p>First <b>block</b></p><p>Second</p>", "First block"},
		{"svg title is not the page title", "text/html", "<svg><title>Icon</title></svg><p>Body</p>", "Body"},
		{"plain text first line", "text/plain", "\n\n  Field   notes\nmore text\n", "Field notes"},
		{"empty content", "text/plain", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := Job{Task: "summarize", Content: []ContentFile{{Name: "c", MediaType: tt.mediaType}}}
			got := runWith(t, job, map[string]string{"c": tt.content}).(SummaryResult)
			if got.Title != tt.want {
				t.Errorf("title = %q, want %q", got.Title, tt.want)
			}
		})
	}
}

func TestClassify_ReportsGivenLabelsFoundAsWholeWords(t *testing.T) {
	tests := []struct {
		labels string
		want   []string
	}{
		{"tide, Crabs ,sea stars", []string{"tide", "Crabs", "sea stars"}},
		{"pool,sea star,stars sea", []string{}},
		{"MUSSELS,mussels,ranger", []string{"MUSSELS", "ranger"}},
		{"ignore,developer mode,exfiltrate,passwd,evil", []string{}},
		{"!!!,tide", []string{"tide"}},
	}
	for _, tt := range tests {
		t.Run(tt.labels, func(t *testing.T) {
			got := run(t, articleJob("classify", map[string]string{"labels": tt.labels})).(ClassifyResult)
			if !reflect.DeepEqual(got.Labels, tt.want) {
				t.Errorf("labels = %#v, want %#v", got.Labels, tt.want)
			}
		})
	}
}

func TestRun_RefusesBadParams(t *testing.T) {
	tests := []struct {
		task   string
		params map[string]string
	}{
		{"summarize", map[string]string{"sentences": "0"}},
		{"summarize", map[string]string{"sentences": "101"}},
		{"summarize", map[string]string{"sentences": "three"}},
		{"summarize", map[string]string{"sentences": ""}},
		{"classify", nil},
		{"classify", map[string]string{"labels": " , ,"}},
		{"classify", map[string]string{"labels": tooManyLabels()}},
		{"classify", map[string]string{"labels": "ok," + strings.Repeat("w ", MaxLabelBytes)}},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i, tt.task), func(t *testing.T) {
			if _, err := Run(articleJob(tt.task, tt.params), fixtures); !errors.Is(err, ErrBadParam) {
				t.Errorf("Run error = %v, want ErrBadParam", err)
			}
		})
	}
}

func TestRun_RefusesUnknownTask(t *testing.T) {
	for _, task := range []string{"", "EXTRACT_TEXT", "exec", "extract_text "} {
		t.Run(task, func(t *testing.T) {
			_, err := Run(articleJob(task, nil), func(string) ([]byte, error) {
				t.Fatal("content read for an unknown task")
				return nil, nil
			})
			if !errors.Is(err, ErrUnknownTask) {
				t.Errorf("Run error = %v, want ErrUnknownTask", err)
			}
		})
	}
}

func TestRun_RefusesContentNameOutsideContentDir(t *testing.T) {
	for _, name := range []string{"", ".", "..", "../job.json", "a/b", `a\b`, "a\x00b", strings.Repeat("n", 256)} {
		t.Run(name, func(t *testing.T) {
			job := Job{Task: "extract_text", Content: []ContentFile{{Name: name}}}
			_, err := Run(job, func(string) ([]byte, error) {
				t.Fatal("reader called for a bad name")
				return nil, nil
			})
			if !errors.Is(err, ErrBadJob) {
				t.Errorf("Run error = %v, want ErrBadJob", err)
			}
		})
	}
}

func TestRun_PropagatesContentErrors(t *testing.T) {
	boom := errors.New("boom")
	job := Job{Task: "extract_text", Content: []ContentFile{{Name: "c"}}}
	if _, err := Run(job, func(string) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("Run error = %v, want boom", err)
	}
	big := func(string) ([]byte, error) { return make([]byte, MaxContentBytes+1), nil }
	if _, err := Run(job, big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Run error = %v, want ErrTooLarge", err)
	}
}

func TestRun_CombinesContentInOrderWithFirstTitle(t *testing.T) {
	job := Job{Task: "extract_text", Content: []ContentFile{
		{Name: "plain.txt", MediaType: "text/plain"},
		{Name: "article.html"},
	}}
	got := run(t, job).(TextResult)
	if got.Title != "Field notes, day one" {
		t.Errorf("title = %q", got.Title)
	}
	wantPrefix := "Field notes, day one\nThe water was cold and clear this morning. We counted twelve sea stars.\n<div hidden>not html here</div>\nHome About us\nTide pools\n"
	if !strings.HasPrefix(got.Text, wantPrefix) {
		t.Errorf("text = %q, want prefix %q", got.Text, wantPrefix)
	}
}

func TestRun_ChoosesHTMLOrPlainText(t *testing.T) {
	const page = "<!DOCTYPE html><html><body><p>Hi <script>x()</script>there</p></body></html>"
	tests := []struct {
		name, mediaType, want string
	}{
		{"declared html", "text/html", "Hi there"},
		{"declared xhtml", "application/xhtml+xml", "Hi there"},
		{"sniffed html", "", "Hi there"},
		{"sniffed html behind unknown type", "application/octet-stream", "Hi there"},
		{"declared plain wins over sniffing", "text/plain; charset=utf-8", page},
		{"unparsable type sniffs", "text/html;;;=", "Hi there"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := Job{Task: "extract_text", Content: []ContentFile{{Name: "c", MediaType: tt.mediaType}}}
			if got := runWith(t, job, map[string]string{"c": page}).(TextResult).Text; got != tt.want {
				t.Errorf("text = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExtractText_CapsTextAtRuneBoundary(t *testing.T) {
	job := Job{Task: "extract_text", Content: []ContentFile{{Name: "c", MediaType: "text/plain"}}}
	got := runWith(t, job, map[string]string{"c": "a" + strings.Repeat("€", MaxTextBytes)}).(TextResult)
	if len(got.Text) > MaxTextBytes || len(got.Text) < MaxTextBytes-3 || !strings.HasSuffix(got.Text, "€") {
		t.Errorf("text is %d bytes ending %q, want at most %d ending in a whole rune", len(got.Text), got.Text[len(got.Text)-3:], MaxTextBytes)
	}
}

func TestTasks_ListsTheVocabularySorted(t *testing.T) {
	want := []string{"agent", "classify", "extract_links", "extract_text", "fetch", "run", "summarize"}
	if got := Tasks(); !reflect.DeepEqual(got, want) {
		t.Errorf("Tasks() = %v, want %v", got, want)
	}
}

func runWith(t *testing.T, job Job, content map[string]string) any {
	t.Helper()
	res, err := Run(job, func(name string) ([]byte, error) {
		c, ok := content[name]
		if !ok {
			return nil, os.ErrNotExist
		}
		return []byte(c), nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func tooManyLabels() string {
	labels := make([]string, MaxLabels+1)
	for i := range labels {
		labels[i] = fmt.Sprint("label", i)
	}
	return strings.Join(labels, ",")
}
