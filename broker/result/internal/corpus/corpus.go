// Package corpus reads the injection detector's corpus in
// broker/result/testdata/injection: JSON Lines files whose every sample
// names its category, language, source and licence. The result package's
// measurements and the detector's own tests and benchmarks read it alike.
package corpus

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Sample is one text of the corpus.
type Sample struct {
	Category string `json:"category"`
	Lang     string `json:"lang"`
	Text     string `json:"text"`
	Source   string `json:"source"`
	Licence  string `json:"licence"`
	Holdout  bool   `json:"holdout"`
	// File is the name of the file the sample is in.
	File string `json:"-"`
}

// Load reads the samples of the files in dir that match pattern, refusing
// a file set that is empty and a sample without text, category, source or
// licence.
func Load(dir, pattern string) ([]Sample, error) {
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no corpus files %s in %s: %v", pattern, dir, err)
	}
	var out []Sample
	for _, name := range files {
		samples, err := loadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, samples...)
	}
	return out, nil
}

func loadFile(name string) ([]Sample, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Sample
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		var s Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if s.Text == "" || s.Category == "" || s.Licence == "" || s.Source == "" {
			return nil, fmt.Errorf("%s:%d: a sample needs text, category, source and licence", name, line)
		}
		s.File = filepath.Base(name)
		out = append(out, s)
	}
	return out, sc.Err()
}
