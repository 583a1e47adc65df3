package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/airlock/airlock/images/imageref"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// importRecorder is a broker that records the ImportImage messages it is
// sent.
type importRecorder struct {
	airlockv1.BrokerClient
	stream *recordedImport
}

func (b *importRecorder) ImportImage(context.Context, ...grpc.CallOption) (grpc.ClientStreamingClient[airlockv1.ImportImageRequest, airlockv1.ImportImageResponse], error) {
	b.stream = &recordedImport{}
	return b.stream, nil
}

type recordedImport struct {
	grpc.ClientStream
	msgs []*airlockv1.ImportImageRequest
}

func (s *recordedImport) Send(m *airlockv1.ImportImageRequest) error {
	// The CLI reuses its buffer: keep a copy, as the wire would.
	s.msgs = append(s.msgs, &airlockv1.ImportImageRequest{Name: m.GetName(), Data: bytes.Clone(m.GetData())})
	return nil
}

func (s *recordedImport) CloseAndRecv() (*airlockv1.ImportImageResponse, error) {
	return &airlockv1.ImportImageResponse{}, nil
}

// TestImageImport_SendsChunksTheBrokerTakes: the name alone first, then the
// file in messages of at most the broker's cap, which together are the
// file.
func TestImageImport_SendsChunksTheBrokerTakes(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), (2*airlockv1.MaxImageChunkBytes+1)/16+1)
	file := filepath.Join(t.TempDir(), "my-agent.oci.tar")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := &importRecorder{}
	if _, err := imageCmd(context.Background(), b, []string{"import", file}); err != nil {
		t.Fatal(err)
	}
	msgs := b.stream.msgs
	if len(msgs) < 3 || msgs[0].GetName() != "my-agent" || len(msgs[0].GetData()) != 0 {
		t.Fatalf("sent %d messages, the first %v; want the name my-agent alone, then the data", len(msgs), msgs[0])
	}
	var got []byte
	for i, m := range msgs[1:] {
		if m.GetName() != "" || len(m.GetData()) == 0 || len(m.GetData()) > airlockv1.MaxImageChunkBytes {
			t.Errorf("message %d: name %q and %d bytes; want data alone, at most %d bytes", i+1, m.GetName(), len(m.GetData()), airlockv1.MaxImageChunkBytes)
		}
		got = append(got, m.GetData()...)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("sent %d bytes that are not the file's %d", len(got), len(data))
	}
}

func TestImageImport_RefusesAFileNameThatNamesNoImage(t *testing.T) {
	file := filepath.Join(t.TempDir(), "My Agent.tar")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &importRecorder{}
	_, err := imageCmd(context.Background(), b, []string{"import", file})
	if err == nil || !strings.Contains(err.Error(), "--name") || !strings.Contains(err.Error(), imageref.NameRule) {
		t.Fatalf("import of %s: %v, want a refusal that says to give --name and the rule", file, err)
	}
	if b.stream != nil {
		t.Error("the CLI opened an import before refusing the name")
	}
}
