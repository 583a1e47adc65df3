package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestImagesFor_ToolsImagePerExecProfileWithItsCommandsOnly(t *testing.T) {
	set := shippedProfiles(t)
	static := filepath.Join(t.TempDir(), "static")
	// A minimal static ELF: the sandbox's own test needs none of its code.
	if err := os.WriteFile(static, minimalStaticELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	specs, err := ImagesFor(set.All(), static, static)
	if err != nil {
		t.Fatal(err)
	}
	links := map[string][]string{}
	for _, s := range specs {
		links[s.Name] = []string{}
		for _, l := range s.Symlinks {
			links[s.Name] = append(links[s.Name], filepath.Base(l.Path))
		}
	}
	if _, ok := links["reader"]; !ok {
		t.Error("no reader image")
	}
	if _, ok := links["tools-ironclaw"]; ok {
		t.Error("ironclaw denies exec but got a tools image")
	}
	sec, _ := set.Get("secureclaw")
	if got := links["tools-secureclaw"]; !slices.Equal(got, sec.ExecCommands()) {
		t.Errorf("tools-secureclaw carries %v, want exactly %v", got, sec.ExecCommands())
	}
}

// minimalStaticELF is an x86-64 ELF header with no program headers, so no
// PT_INTERP: what CheckStatic looks for.
func minimalStaticELF() []byte {
	h := make([]byte, 64)
	copy(h, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	h[16] = 2    // ET_EXEC
	h[18] = 0x3e // EM_X86_64
	h[20] = 1    // EV_CURRENT
	h[52] = 64   // e_ehsize
	h[54] = 56   // e_phentsize
	h[58] = 64   // e_shentsize
	return h
}
