package docs

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/airlock/airlock/images"
)

// TestMountpointDocs_ListTheDirectoriesAnImportChecks: agent-contract.md
// tells an agent's author which directories an image must hold, and
// images.md which missing ones an import refuses. Both copy
// images.Mountpoints, the list the import checks and the builders add, so
// a directory added to it or dropped from it without them would have
// authors build images that an import refuses.
func TestMountpointDocs_ListTheDirectoriesAnImportChecks(t *testing.T) {
	var want []string
	for _, mp := range images.Mountpoints() {
		want = append(want, mp.Path)
	}
	quoted := regexp.MustCompile("`(/[^`]*)`")
	for _, tc := range []struct {
		file string
		// list matches the passage that lists them, in backquotes.
		list *regexp.Regexp
	}{
		{"agent-contract.md", regexp.MustCompile("(?s)The image must hold the mountpoints (.*?) as directories")},
		{"images.md", regexp.MustCompile("\\| no (`/[^|]*) directory \\|")},
	} {
		doc, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		m := tc.list.FindSubmatch(doc)
		if m == nil {
			t.Errorf("%s: no passage matches %q; if it was reworded, point this test at its list of mountpoints", tc.file, tc.list)
			continue
		}
		var got []string
		for _, q := range quoted.FindAllSubmatch(m[1], -1) {
			got = append(got, string(q[1]))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s lists the mountpoints %q; images.Mountpoints has %q", tc.file, got, want)
		}
	}
}
