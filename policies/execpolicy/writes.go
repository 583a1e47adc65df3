package execpolicy

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrWrites means a command would write a file, or uses an option whose
// effect the matcher does not know and so cannot rule that out. The tools
// image carries read-only text tools: whatever a profile's allowlist says,
// no command run through the gateway may write where its output is not the
// job's to read.
var ErrWrites = errors.New("command writes files")

// applet is how busybox parses one applet's arguments and how it can write
// a file. Busybox 1.35 parses options with glibc's getopt: options and
// operands may come in any order, option letters cluster (-uo FILE), an
// option's argument is the rest of its word or the next word, and "--"
// ends the options.
type applet struct {
	// flags are the option letters that take no argument; args those that
	// take one.
	flags, args string
	// output is the option letter whose argument is a file written; 0 for
	// none.
	output byte
	// maxOperands is how many operands the applet reads; one more names a
	// file it writes (uniq's OUTPUT). Negative: any number, all read.
	maxOperands int
}

// applets is the audit of every applet the tools image may carry
// (images.ToolApplets, busybox 1.35), so that a new one cannot ship
// unaudited (images' tests check the two lists). The applets that write
// stay, because their reading forms are what profiles use them for, and
// CheckWrites refuses their writing forms instead:
//
//   - sort writes the file named by -o, in any of getopt's spellings
//     (-o F, -oF, -uo F, after the operands); -T and -S take an argument
//     and write nothing in busybox.
//   - uniq writes its second operand (uniq IN OUT).
//
// The others read files or stdin and write only to stdout, under every
// option busybox gives them: cat, cut, grep (-f reads a file; no -r
// output), head, tail (-f only follows), tr (stdin only), wc.
//
// Not shipped, because they write, delete or spawn in their ordinary
// forms: tee, cp, mv, rm, dd, sed (-i, w), awk (redirection, system()),
// find (-exec, -delete, -fprint), xargs, split, patch, gzip and friends
// without -c, tar (x, -f), sh and every other shell. Adding one means an
// entry here first.
var applets = map[string]*applet{
	"cat":  nil,
	"cut":  nil,
	"grep": nil,
	"head": nil,
	"tail": nil,
	"tr":   nil,
	"wc":   nil,
	"sort": {flags: "bcdfgimnrsuzMV", args: "kotST", output: 'o', maxOperands: -1},
	"uniq": {flags: "cdiuz", args: "fsw", maxOperands: 1},
}

// Audited reports whether CheckWrites knows every writing form of the
// applet called name.
func Audited(name string) bool {
	_, ok := applets[name]
	return ok
}

// CheckWrites refuses argv when the command it names would write a file:
// sort -o and uniq's output operand, however spelled, and any option of
// those applets the matcher does not know (a long option, an unknown
// letter), since busybox's parse of it is not one the matcher can repeat.
// argv[0] is judged by its base name, wherever it resolves: only /bin
// holds applets, and a lookalike elsewhere gains nothing. A command that
// is no applet has nothing to check here.
func CheckWrites(argv []string) error {
	if len(argv) == 0 {
		return nil
	}
	name := path.Base(argv[0])
	a := applets[name]
	if a == nil {
		return nil
	}
	operands := 0
	for i := 1; i < len(argv); i++ {
		w := argv[i]
		if w == "--" {
			operands += len(argv) - i - 1
			break
		}
		if len(w) < 2 || w[0] != '-' {
			operands++
			continue
		}
		if w[1] == '-' {
			return fmt.Errorf("%w: %s has no long options, and the matcher does not guess what %s would do", ErrWrites, name, quoteWord(w))
		}
		for j := 1; j < len(w); j++ {
			c := w[j]
			switch {
			case c == a.output && a.output != 0:
				return fmt.Errorf("%w: %s -%c writes the file it names; the tools are read-only, so read the output instead", ErrWrites, name, c)
			case strings.IndexByte(a.args, c) >= 0:
				if j == len(w)-1 {
					i++ // the argument is the next word
				}
				j = len(w)
			case strings.IndexByte(a.flags, c) < 0:
				return fmt.Errorf("%w: %s has no option %s that the matcher knows, so it cannot tell whether it writes", ErrWrites, name, quoteWord("-"+string(c)))
			}
		}
	}
	if a.maxOperands >= 0 && operands > a.maxOperands {
		return fmt.Errorf("%w: %s writes its operand %d to a file; give it at most %d file to read", ErrWrites, name, a.maxOperands+1, a.maxOperands)
	}
	return nil
}
