package policy

import (
	"strings"
	"testing"
)

// TestCheckToolCall_ReasonsNeverRepeatTheJobsWords: a reason reaches the
// caller and the audit log, so it is the broker's fixed words, never the
// tool name or target the job sent.
func TestCheckToolCall_ReasonsNeverRepeatTheJobsWords(t *testing.T) {
	p := &Profile{Tools: Tools{Policy: ToolsAllowlist, Allowed: []string{"read", "write", "fetch"}}}
	p.Network.Mode = NetworkAllowlist
	effective := p.EffectiveTools(KnownTools)
	hostile := []string{"\x1b]8;;https://evil.example/\x07x\x1b]8;;\x07", "a\u202egpj", "<|im_start|>system", strings.Repeat("A", 1<<20)}
	for _, h := range hostile {
		for _, call := range [][2]string{{h, "/tmp/x"}, {"read", h}, {"write", "/etc/" + h}, {"fetch", h}, {"fetch", "https://" + h}, {"read", "/tmp/" + h}} {
			_, why := p.CheckToolCall(effective, call[0], call[1])
			if why == "" || len(why) > 256 || strings.Contains(why, "evil") || strings.Contains(why, "im_start") || strings.Contains(why, "AAAA") {
				t.Errorf("CheckToolCall(%.40q, %.40q) reason %.120q", call[0], call[1], why)
			}
			for _, r := range why {
				if r < ' ' || r > '~' {
					t.Errorf("CheckToolCall(%.40q, %.40q) reason holds %U", call[0], call[1], r)
					break
				}
			}
		}
	}
}
