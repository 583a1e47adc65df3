package result_test

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/result"
)

// benchWords is the vocabulary of the benchmark's prose.
var benchWords = strings.Fields(`the of and to in a is that for it as was with be by on not he this are or
his from at which but have an they you were her she there been one all we their has would when if so no
will can more other its into than some could them time these two may then do first any like my now over
such our man me even most made after also did many before must through back years where much your way
well down should because each just those people how too little state good very make world still own see
men work long get here between both life being under never day same another know while last might us
great old year off come since against go came right used take three report market growth revenue quarter
customer product analysis summary result data system network service security update release version`)

// benchResult builds a result of about size bytes that looks like what a
// summarizing job returns: sections of English paragraphs with Markdown
// links, typographic punctuation and the occasional escape sequence.
func benchResult(size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	type section struct {
		Heading string   `json:"heading"`
		Body    string   `json:"body"`
		Links   []string `json:"links"`
	}
	var sections []section
	total := 0
	for total < size {
		var b strings.Builder
		for p := 0; p < 6; p++ {
			for w := 0; w < 90; w++ {
				if w > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(benchWords[r.IntN(len(benchWords))])
				switch r.IntN(60) {
				case 0:
					b.WriteString(" (see https://docs.example.com/guide/page" + string(rune('a'+r.IntN(26))) + ")")
				case 1:
					b.WriteString(" [source](https://news.example.org/2024/article)")
				case 2:
					b.WriteString(" \u2014 \u201cquoted\u201d")
				case 3:
					b.WriteString(",")
				case 4:
					b.WriteString(": note")
				}
			}
			b.WriteString(".\n\n")
		}
		if r.IntN(4) == 0 {
			b.WriteString("\x1b[1mBold\x1b[0m text and a zero\u200bwidth space.")
		}
		s := section{
			Heading: "Section about " + benchWords[r.IntN(len(benchWords))],
			Body:    b.String(),
			Links:   []string{"https://docs.example.com/a", "https://tracker.example.net/x?id=1"},
		}
		sections = append(sections, s)
		total += len(s.Body) + 120
	}
	raw, err := json.Marshal(map[string]any{"title": "Quarterly summary", "sections": sections})
	if err != nil {
		panic(err)
	}
	return raw
}

// benchOptions is a realistic configuration: a few secrets and an allowlist.
func benchOptions() result.SanitizeOptions {
	return result.SanitizeOptions{
		Secrets: [][]byte{
			[]byte("airlock-token-6f1c2a9e8b7d4c3f"),
			[]byte("svc_9aQ2xL7pM4tR8vW1zY6bN3cK"),
			[]byte("canary-3e1f0b7c5d9a2468"),
		},
		AllowedHosts: func(h string) bool { return h == "docs.example.com" },
	}
}

func BenchmarkSanitize_1MiB(b *testing.B) {
	raw := benchResult(1 << 20)
	v, err := result.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	opts := benchOptions()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		result.Sanitize(v, opts)
	}
}

// BenchmarkSanitize_1MiBNoFlags is BenchmarkSanitize_1MiB without the
// injection detector: what the detector costs is the ratio of the two.
func BenchmarkSanitize_1MiBNoFlags(b *testing.B) {
	defer result.SetFlagging(result.SetFlagging(false))
	BenchmarkSanitize_1MiB(b)
}

func BenchmarkProcess_1MiB(b *testing.B) {
	raw := benchResult(1 << 20)
	schema, err := result.CompileSchema(`{"type":"object","required":["title","sections"]}`)
	if err != nil {
		b.Fatal(err)
	}
	opts := benchOptions()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := result.Process(raw, schema, 2<<20, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSanitize_1MiBInjected is the detector's worst realistic case: a
// result made of the injection corpus, where rules fire on every line.
func BenchmarkSanitize_1MiBInjected(b *testing.B) {
	var texts []string
	for _, s := range loadCorpus(b, "injected*.jsonl") {
		texts = append(texts, s.Text)
	}
	// Each item is made distinct, as the texts of a real result are: the
	// detector reads a string that comes twice only once.
	var items []string
	for n, i := 0, 0; n < 1<<20; i++ {
		t := texts[i%len(texts)] + " (" + strconv.Itoa(i) + ")"
		items = append(items, t)
		n += len(t) + 4
	}
	raw, err := json.Marshal(map[string]any{"items": items})
	if err != nil {
		b.Fatal(err)
	}
	v, err := result.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	opts := benchOptions()
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		result.Sanitize(v, opts)
	}
}
