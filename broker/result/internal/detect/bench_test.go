package detect

import (
	"path/filepath"
	"testing"

	"github.com/airlock/airlock/broker/result/internal/corpus"
)

// corpusTexts returns the texts of the result package's corpus files that
// match pattern.
func corpusTexts(tb testing.TB, pattern string) []string {
	tb.Helper()
	samples, err := corpus.Load(filepath.Join("..", "..", "testdata", "injection"), pattern)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]string, len(samples))
	for i, s := range samples {
		out[i] = s.Text
	}
	return out
}

// benchScan scans about 1 MiB made of the corpus texts, each as its own
// string, as a result's fields come.
func benchScan(b *testing.B, pattern string) {
	texts := corpusTexts(b, pattern)
	var items []string
	n := 0
	for i := 0; n < 1<<20; i++ {
		items = append(items, texts[i%len(texts)])
		n += len(texts[i%len(texts)])
	}
	b.SetBytes(int64(n))
	for b.Loop() {
		for _, s := range items {
			Scan(s)
		}
	}
}

func BenchmarkScan_Benign(b *testing.B)   { benchScan(b, "benign*.jsonl") }
func BenchmarkScan_Injected(b *testing.B) { benchScan(b, "injected*.jsonl") }
