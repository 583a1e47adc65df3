package doctor

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"

	"github.com/airlock/airlock/broker/auth"
)

// maxTokenBytes bounds reading a token file, as auth.LoadToken does.
const maxTokenBytes = 4096

// genFix is how to make a token that passes auth.CheckToken.
const genFix = "generate one with `openssl rand -hex 32 > FILE` and chmod 600 it"

// literalKeys are the keys auth.LoadTokens refuses in a tokens file,
// because they are where a careless operator pastes a token.
var literalKeys = []string{"token", "secret", "value", "bearer", "password"}

// tokenSource is one gateway token airlockd would load.
type tokenSource struct {
	// label names the source without its secret: "--token-file /x" or
	// "tokens[1] (ops) env:NAME".
	label string
	// file is the token file, empty for an env reference.
	file string
	// secret is the token, nil if it could not be read.
	secret []byte
	err    error
}

// gatewayTokens reads every token airlockd's configuration names: the
// --token-file and each file: or env: reference in the --tokens file.
// Literal references are left to checkLiteralTokens.
func gatewayTokens(c Config) ([]tokenSource, error) {
	var out []tokenSource
	if c.TokenFile != "" {
		s, _, err := readSecret(c.TokenFile)
		out = append(out, tokenSource{label: "--token-file " + c.TokenFile, file: c.TokenFile, secret: s, err: err})
	}
	if c.TokensFile == "" {
		return out, nil
	}
	entries, err := tokenEntries(c.TokensFile)
	if err != nil {
		return out, err
	}
	for i, t := range entries {
		label := fmt.Sprintf("%s: tokens[%d] (%s)", c.TokensFile, i, t.name)
		switch {
		case strings.HasPrefix(t.ref, "file:/"):
			path := strings.TrimPrefix(t.ref, "file:")
			s, _, err := readSecret(path)
			out = append(out, tokenSource{label: label + " file " + path, file: path, secret: s, err: err})
		case strings.HasPrefix(t.ref, "env:"):
			name := strings.TrimPrefix(t.ref, "env:")
			src := tokenSource{label: label + " env " + name}
			if v := strings.TrimSpace(os.Getenv(name)); v != "" {
				src.secret = []byte(v)
			} else {
				src.err = fmt.Errorf("environment variable %q is unset or empty in this shell (airlockd's environment may differ)", name)
			}
			out = append(out, src)
		}
	}
	return out, nil
}

type tokenEntry struct {
	name, ref string
	line      int
}

// tokenEntries reads the name and secretRef of each entry of a tokens
// file, leniently: judging the file is the other checks' business.
func tokenEntries(path string) ([]tokenEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Tokens []yaml.Node `yaml:"tokens"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	var out []tokenEntry
	for _, n := range doc.Tokens {
		var t struct {
			Name string `yaml:"name"`
			Ref  string `yaml:"secretRef"`
		}
		_ = n.Decode(&t)
		out = append(out, tokenEntry{name: t.Name, ref: t.Ref, line: n.Line})
	}
	return out, nil
}

// readSecret reads a token file the way auth.LoadToken does (a regular
// file, bounded, trimmed) but without judging it, so that each check can
// report its own part.
func readSecret(path string) ([]byte, fs.FileInfo, error) {
	// O_NONBLOCK so that a FIFO is reported instead of hanging the doctor.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, st, fmt.Errorf("%s is not a regular file", path)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return nil, st, err
	}
	if len(raw) > maxTokenBytes {
		return nil, st, fmt.Errorf("%s is over %d bytes; it should hold only the token", path, maxTokenBytes)
	}
	tok := bytes.TrimSpace(raw)
	if len(tok) == 0 {
		return nil, st, fmt.Errorf("%s is empty", path)
	}
	return tok, st, nil
}

// checkTokenStrength holds every gateway token to auth.CheckToken, the
// rule airlockd refuses to start without.
func checkTokenStrength(_ context.Context, e *env) result {
	var f findings
	if e.tokensErr != nil {
		f.add(Fail, fmt.Sprintf("%v: airlockd cannot load its tokens", e.tokensErr), "fix the tokens file (see airlock doctor's tokens.literal and airlockd's error)")
	}
	if len(e.tokens) == 0 && e.tokensErr == nil {
		f.add(Warn, "no token configured (--token-file, $AIRLOCK_TOKEN_FILE or --tokens): airlockd refuses to start without one", "pass the token file airlockd uses; "+genFix)
	}
	var labels []string
	for _, t := range e.tokens {
		labels = append(labels, t.label)
		if t.err != nil {
			f.add(Fail, fmt.Sprintf("%s: %v", t.label, t.err), genFix)
			continue
		}
		if err := auth.CheckToken(t.secret); err != nil {
			f.add(Fail, fmt.Sprintf("%s: %v", t.label, err), genFix)
		}
	}
	return f.result(fmt.Sprintf("%d token(s) of at least 192 bits: %s", len(e.tokens), strings.Join(labels, ", ")))
}

// checkTokenFileMode checks that only their owner can read the token
// files, and that only root can change which tokens the tokens file names.
func checkTokenFileMode(_ context.Context, e *env) result {
	var f findings
	var files []string
	secretFiles := map[string]bool{}
	for _, t := range e.tokens {
		if t.file != "" {
			secretFiles[t.file] = true
			files = append(files, t.file)
		}
	}
	if p := e.cfg.WebhookTokenFile; p != "" && !secretFiles[p] {
		secretFiles[p] = true
		files = append(files, p)
	}
	for _, p := range files {
		st, err := os.Stat(p)
		if err != nil {
			f.add(Fail, fmt.Sprintf("%s: %v", p, err), "create it: "+genFix)
			continue
		}
		if !st.Mode().IsRegular() {
			f.add(Fail, fmt.Sprintf("%s is not a regular file", p), "replace it with a regular file holding the token")
			continue
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			f.add(Fail, fmt.Sprintf("%s has mode %#o: other users can read or change the token", p, perm), "chmod 600 "+p+" and rotate the token, since it may have been read")
		}
	}
	if p := e.cfg.TokensFile; p != "" {
		files = append(files, p)
		if st, err := os.Stat(p); err == nil {
			if perm := st.Mode().Perm(); perm&0o022 != 0 {
				f.add(Fail, fmt.Sprintf("tokens file %s has mode %#o: other users can add a token of their own", p, perm), "chmod 644 "+p+" (it holds references, not secrets)")
			}
			if uid := owner(st); uid != 0 && uid != e.cfg.owner {
				f.add(Fail, fmt.Sprintf("tokens file %s is owned by uid %d, who can add a token of their own", p, uid), "chown root "+p)
			}
		}
	}
	if len(files) == 0 {
		return result{ok: true, detail: "no token files configured"}
	}
	return f.result("private: " + strings.Join(files, ", "))
}

// checkLiteralTokens looks for a token written into the tokens file
// itself, where backups, diffs and config management would spread it.
// It reports where, never what.
func checkLiteralTokens(_ context.Context, e *env) result {
	var f findings
	path := e.cfg.TokensFile
	if path == "" {
		return result{ok: true, detail: "no --tokens file"}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.add(Fail, fmt.Sprintf("tokens file: %v", err), "pass the --tokens file airlockd uses")
		return f.result("")
	}
	const fix = "put each token in its own chmod 600 file and name it with secretRef: file:/path (or env:NAME), then rotate the exposed token"
	seen := map[int]bool{}
	report := func(line int, what string) {
		if !seen[line] {
			seen[line] = true
			f.add(Fail, fmt.Sprintf("%s:%d: %s", path, line, what), fix)
		}
	}
	// The same test as auth.LoadTokens, line by line to say where.
	for i, l := range strings.Split(string(data), "\n") {
		for _, k := range literalKeys {
			if strings.Contains(l, k+":") {
				report(i+1, fmt.Sprintf("a %q key, which airlockd refuses as a literal token", k))
				break
			}
		}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		f.add(Warn, fmt.Sprintf("%s cannot be parsed, so only its keys were checked: %v", path, err), "fix the YAML")
	} else {
		walkScalars(&root, "", func(key string, n *yaml.Node) {
			switch {
			case key == "secretRef":
				if !strings.HasPrefix(n.Value, "file:/") && !strings.HasPrefix(n.Value, "env:") && n.Value != "" {
					report(n.Line, "secretRef is neither file:/path nor env:NAME, so it is the token itself")
				}
			case key != "name" && len(n.Value) >= 32 && auth.CheckToken([]byte(n.Value)) == nil:
				report(n.Line, fmt.Sprintf("the value of %q looks like a token", key))
			}
		})
	}
	// What airlockd itself would say, in case its rules grew beyond these.
	if _, err := auth.LoadTokens(path); errors.Is(err, auth.ErrLiteralToken) && len(f.detail) == 0 {
		f.add(Fail, err.Error(), fix)
	}
	return f.result(path + " holds only secretRefs")
}

// walkScalars calls fn for every scalar value in n, with the mapping key
// it is under ("" for list items and the document).
func walkScalars(n *yaml.Node, key string, fn func(key string, n *yaml.Node)) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			walkScalars(c, key, fn)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkScalars(n.Content[i+1], n.Content[i].Value, fn)
		}
	case yaml.ScalarNode:
		fn(key, n)
	}
}

// checkWebhookDistinct compares the webhook token with every gateway
// token: one secret for both means a leak of either opens both doors.
func checkWebhookDistinct(_ context.Context, e *env) result {
	var f findings
	path := e.cfg.WebhookTokenFile
	if path == "" {
		return result{ok: true, detail: "no webhook token configured"}
	}
	hook, _, err := readSecret(path)
	if err != nil {
		f.add(Warn, fmt.Sprintf("cannot read webhook token: %v", err), "pass the webhook token file the agent side uses")
		return f.result("")
	}
	compared := 0
	for _, t := range e.tokens {
		if t.secret == nil {
			continue
		}
		compared++
		if subtle.ConstantTimeCompare(hook, t.secret) == 1 {
			f.add(Fail, fmt.Sprintf("webhook token %s is the same secret as gateway token %s", path, t.label),
				"give the webhook its own token ("+genFix+") and rotate the gateway token")
		}
	}
	if compared == 0 {
		f.add(Warn, "no gateway token could be read to compare with", "pass --token-file or --tokens")
	}
	return f.result(fmt.Sprintf("webhook token %s differs from all %d gateway token(s)", path, compared))
}
