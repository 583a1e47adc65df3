// Package jobtest reads the exit codes of package job from its source, for
// tests that hold the contract's other copies to them: the broker's
// verdicts, docs/agent-contract.md, and the example agents in languages
// that cannot import Go.
package jobtest

import (
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// ExitCodes are package job's Exit constants by name, read from exit.go,
// so that a test over them covers a code added later too. exit.go imports
// nothing, so it type-checks alone.
func ExitCodes(t testing.TB) map[string]int {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(self) {
		t.Fatalf("jobtest: cannot find its own source (%q) to read exit.go next to it; was the test built with -trimpath?", self)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(filepath.Dir(self), "..", "exit.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := new(types.Config).Check("job", fset, []*ast.File{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int{}
	for _, name := range pkg.Scope().Names() {
		c, ok := pkg.Scope().Lookup(name).(*types.Const)
		if !ok || !strings.HasPrefix(name, "Exit") {
			continue
		}
		v, exact := constant.Int64Val(c.Val())
		if !exact {
			t.Fatalf("jobtest: job.%s = %s is not an exit code", name, c.Val())
		}
		codes[name] = int(v)
	}
	if len(codes) == 0 {
		t.Fatal("jobtest: exit.go has no Exit constants")
	}
	return codes
}
