package job

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCheckTask_RefusesWhatTheReferenceAgentWouldAndNamesTheValidChoices(t *testing.T) {
	specs := ReferenceTasks()
	tests := []struct {
		name   string
		task   string
		params map[string]string
		// want are substrings of the error; none means accepted.
		want []string
	}{
		{"extract_text", TaskExtractText, nil, nil},
		{"summarize with default sentences", TaskSummarize, nil, nil},
		{"summarize with sentences", TaskSummarize, map[string]string{"sentences": "5"}, nil},
		{"classify", TaskClassify, map[string]string{"labels": "a, b"}, nil},
		{"fetch", TaskFetch, map[string]string{"url": "https://example.com/p"}, nil},
		{"run", TaskRun, map[string]string{"calls": `[["wc","-c","/input/content/0"]]`}, nil},
		{"agent", TaskAgent, nil, nil},

		{"unknown task", "summarise", nil, []string{`no task "summarise"`, "agent, classify, extract_links, extract_text, fetch, run, summarize"}},
		{"unknown param", TaskSummarize, map[string]string{"sentence": "2"}, []string{`takes no param "sentence"`, "sentences (optional): an integer from 1 to 100"}},
		{"param of a task without any", TaskExtractText, map[string]string{"x": "1"}, []string{"it takes no params"}},
		{"missing required", TaskClassify, nil, []string{"needs param labels"}},
		{"sentences out of range", TaskSummarize, map[string]string{"sentences": "101"}, []string{"from 1 to 100"}},
		{"sentences not a number", TaskSummarize, map[string]string{"sentences": "three"}, []string{"from 1 to 100"}},
		{"too many labels", TaskClassify, map[string]string{"labels": manyLabels(65)}, []string{"more than 64 labels"}},
		{"blank labels", TaskClassify, map[string]string{"labels": " , ,"}, []string{"at least one label"}},
		{"fetch of a file URL", TaskFetch, map[string]string{"url": "file:///etc/passwd"}, []string{"absolute http or https"}},
		{"fetch with credentials", TaskFetch, map[string]string{"url": "https://u:p@example.com/"}, []string{"credentials"}},
		{"fetch of a long URL", TaskFetch, map[string]string{"url": "https://example.com/" + strings.Repeat("a", MaxURLBytes)}, []string{"over 2048 bytes"}},
		{"run with bad JSON", TaskRun, map[string]string{"calls": `[["wc"]`}, []string{"JSON list"}},
		{"run with an unknown tool", TaskRun, map[string]string{"calls": `[{"tool":"delete","path":"/tmp/a"}]`}, []string{`unknown tool "delete"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTask(specs, tt.task, tt.params)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadTask) {
				t.Fatalf("err = %v, want ErrBadTask", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
		})
	}
}

func TestCheckTask_AnyParamsTakesUnlistedParams(t *testing.T) {
	specs := []TaskSpec{{Name: "attack", AnyParams: true}}
	if err := CheckTask(specs, "attack", map[string]string{"attack": "[]", "x": "y"}); err != nil {
		t.Errorf("refused: %v", err)
	}
	if err := CheckTask(specs, "summarize", nil); !errors.Is(err, ErrBadTask) {
		t.Errorf("a task not in the set: %v, want ErrBadTask", err)
	}
}

func manyLabels(n int) string {
	ls := make([]string, n)
	for i := range ls {
		ls[i] = fmt.Sprintf("l%d", i)
	}
	return strings.Join(ls, ",")
}
