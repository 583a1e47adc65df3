package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/airlock/airlock/images/imageref"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

const imageUsage = `usage: airlock image import FILE [--name NAME] | list | rm NAME[@DIGEST]

  import  upload an OCI image-layout or docker save tarball; prints its
          digest, which a profile pins as agent.image: NAME@DIGEST
  list    the imported agent images
  rm      remove an image (every digest of NAME, or NAME@DIGEST)
`

// imageCmd imports, lists and removes agent images. The CLI reads the
// file and streams it: airlockd never opens a path its caller names.
func imageCmd(ctx context.Context, b airlockv1.BrokerClient, args []string) (proto.Message, error) {
	if len(args) == 0 {
		return nil, errors.New(imageUsage)
	}
	switch args[0] {
	case "import":
		return imageImport(ctx, b, args[1:])
	case "list":
		if len(args) != 1 {
			return nil, errors.New(imageUsage)
		}
		return b.ListImages(ctx, &airlockv1.ListImagesRequest{})
	case "rm":
		if len(args) != 2 {
			return nil, errors.New(imageUsage)
		}
		name, digest := imageref.Split(args[1])
		return b.RemoveImage(ctx, &airlockv1.RemoveImageRequest{Name: name, Digest: digest})
	}
	return nil, fmt.Errorf("image: unknown command %q\n%s", args[0], imageUsage)
}

// parseOperand parses args of the form OPERAND [flags] or [flags] OPERAND
// with fset, and returns the one operand: the usage shows it first, and
// flags may follow it.
func parseOperand(fset *flag.FlagSet, args []string, usage string) (string, error) {
	var operand string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		operand, args = args[0], args[1:]
	}
	if err := fset.Parse(args); err != nil {
		return "", err
	}
	if operand == "" && fset.NArg() == 1 {
		operand = fset.Arg(0)
	} else if operand == "" || fset.NArg() != 0 {
		return "", errors.New(usage)
	}
	return operand, nil
}

func imageImport(ctx context.Context, b airlockv1.BrokerClient, args []string) (proto.Message, error) {
	fset := flag.NewFlagSet("image import", flag.ContinueOnError)
	name := fset.String("name", "", "the image's name (default: the file's name without its extensions)")
	file, err := parseOperand(fset, args, imageUsage)
	if err != nil {
		return nil, err
	}
	if *name == "" {
		*name = defaultImageName(file)
		if !imageref.ValidName(*name) {
			return nil, fmt.Errorf("image import: %q is not an image name; give one with --name (%s)", *name, imageref.NameRule)
		}
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	stream, err := b.ImportImage(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&airlockv1.ImportImageRequest{Name: *name}); err != nil {
		return nil, sendErr(stream, err)
	}
	// As large as the broker takes, so that the fewest messages carry it.
	buf := make([]byte, airlockv1.MaxImageChunkBytes)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if serr := stream.Send(&airlockv1.ImportImageRequest{Data: buf[:n]}); serr != nil {
				return nil, sendErr(stream, serr)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return stream.CloseAndRecv()
}

// sendErr is the broker's own error when it ended the stream early (a
// refusal, an upload over its cap), rather than the bare EOF of the send.
func sendErr(stream airlockv1.Broker_ImportImageClient, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.CloseAndRecv(); rerr != nil {
			return rerr
		}
	}
	return err
}

// defaultImageName is the file's base name, lowercased, without its
// extensions: agent.oci.tar is agent.
func defaultImageName(file string) string {
	base := strings.ToLower(filepath.Base(file))
	for {
		ext := filepath.Ext(base)
		if ext == "" || ext == base {
			return base
		}
		switch ext {
		case ".tar", ".gz", ".tgz", ".oci", ".docker", ".image":
			base = strings.TrimSuffix(base, ext)
		default:
			return base
		}
	}
}
