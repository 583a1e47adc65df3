// Command mkimage builds an OCI image-layout tarball from a root filesystem
// directory, with package images/rootfs: the Makefile's way to make the
// example agents' images (make agents) without a registry or Docker.
//
//	mkimage -root DIR -name NAME -o FILE [-env K=V]... [-user USER] -- ENTRYPOINT [ARG]...
//
// It prints the manifest digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/images/rootfs"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

// envFlags collects repeated -env flags.
type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, ",") }
func (e *envFlags) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q is not K=V", v)
	}
	*e = append(*e, v)
	return nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	root := fs.String("root", "", "the root filesystem directory")
	name := fs.String("name", "", "the image's short name, such as python-agent")
	out := fs.String("o", "", "the tarball to write")
	maxBytes := fs.Int64("max-bytes", rootfs.DefaultMaxBytes, "cap on the bytes of the image's files")
	var env envFlags
	fs.Var(&env, "env", "an Env entry of the image config, K=V (repeatable)")
	user := fs.String("user", images.NobodyUser, "the image config's User; a sandbox's is ignored, airlockd's is 0:0")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *root == "" || *name == "" || *out == "" || fs.NArg() == 0 {
		return errors.New("usage: mkimage -root DIR -name NAME -o FILE [-env K=V]... [-user USER] -- ENTRYPOINT [ARG]...")
	}
	// Written beside the target and renamed, so that a failed build never
	// leaves a tarball that looks whole.
	f, err := os.CreateTemp(filepath.Dir(*out), ".mkimage-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	d, err := rootfs.Build(f, *root, *name, fs.Args(), rootfs.WithEnv(env), rootfs.WithUser(*user), rootfs.WithMaxBytes(*maxBytes))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), *out); err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}
