package detect

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// corpusTexts returns the texts of the result package's corpus files that
// match pattern.
func corpusTexts(tb testing.TB, pattern string) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "injection", pattern))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no corpus files %s: %v", pattern, err)
	}
	var out []string
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var s struct{ Text string }
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				tb.Fatal(err)
			}
			out = append(out, s.Text)
		}
		f.Close()
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
