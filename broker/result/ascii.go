package result

// Byte classes for the hand-written scanners. Regular expressions over a
// whole result would cost most of the time budget; these tables let each
// scanner look at a byte once.
const (
	clsAlnum      = 1 << iota // [A-Za-z0-9]
	clsB64URL                 // [A-Za-z0-9_-]
	clsUpperDigit             // [A-Z0-9]
	clsToken                  // RFC 6750 b64token: [A-Za-z0-9._~+/-] and '='
	clsAlnumUnder             // [A-Za-z0-9_]
	clsAlnumDash              // [A-Za-z0-9-]
	clsScheme                 // URI scheme: [A-Za-z0-9+.-]
)

var class = func() (t [256]uint8) {
	for c := range 256 {
		b := byte(c)
		alpha := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
		digit := '0' <= b && b <= '9'
		if alpha || digit {
			t[c] |= clsAlnum | clsB64URL | clsToken | clsAlnumUnder | clsAlnumDash | clsScheme
		}
		if 'A' <= b && b <= 'Z' || digit {
			t[c] |= clsUpperDigit
		}
		switch b {
		case '_':
			t[c] |= clsB64URL | clsAlnumUnder
		case '-':
			t[c] |= clsB64URL | clsToken | clsAlnumDash | clsScheme
		case '.', '~', '/', '=':
			t[c] |= clsToken
		case '+':
			t[c] |= clsToken | clsScheme
		}
		if b == '.' {
			t[c] |= clsScheme
		}
	}
	return t
}()

func isAlnum(c byte) bool { return class[c]&clsAlnum != 0 }

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// runEnd returns the end of the run of bytes of class cls that starts at i.
func runEnd(s string, i int, cls uint8) int {
	for i < len(s) && class[s[i]]&cls != 0 {
		i++
	}
	return i
}

// skipBlanks skips spaces and tabs.
func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// skipSpace skips spaces, tabs and newlines.
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
		i++
	}
	return i
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFoldASCII reports whether s equals lower, a lowercase ASCII string,
// ignoring ASCII case only: folding other letters (the Kelvin sign to k)
// would let lookalikes match where NFKC has chosen not to fold them.
func equalFoldASCII[T string | []byte](s T, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := range len(lower) {
		if lowerASCII(s[i]) != lower[i] {
			return false
		}
	}
	return true
}

// hasDigit reports whether s contains an ASCII digit.
func hasDigit(s string) bool {
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			return true
		}
	}
	return false
}
