package examples

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock/airlock/sandbox/job/jobtest"
)

// TestAgents_ExitCodesAreSandboxJobs: the example agents cannot import
// sandbox/job, so each spells the exit codes it uses; every one must be
// the code of sandbox/job by the same name (EXIT_BAD_JOB is ExitBadJob).
func TestAgents_ExitCodesAreSandboxJobs(t *testing.T) {
	codes := jobtest.ExitCodes(t)
	byWords := map[string]string{} // "BADJOB": "ExitBadJob"
	for name := range codes {
		byWords[strings.ToUpper(strings.TrimPrefix(name, "Exit"))] = name
	}
	for file, decl := range map[string]string{
		"agents/python/agent.py": `(?m)^EXIT_([A-Z_]+) = (\d+)$`,
		"agents/node/agent.mjs":  `(?m)^const EXIT_([A-Z_]+) = (\d+);$`,
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		found := regexp.MustCompile(decl).FindAllStringSubmatch(string(b), -1)
		if len(found) == 0 {
			t.Errorf("%s declares no EXIT_ constants: the test checks nothing", file)
		}
		for _, m := range found {
			name, ok := byWords[strings.ReplaceAll(m[1], "_", "")]
			switch {
			case !ok:
				t.Errorf("%s: EXIT_%s is no exit code of sandbox/job", file, m[1])
			case m[2] != strconv.Itoa(codes[name]):
				t.Errorf("%s: EXIT_%s = %s; sandbox/job's %s is %d", file, m[1], m[2], name, codes[name])
			}
		}
	}
}
