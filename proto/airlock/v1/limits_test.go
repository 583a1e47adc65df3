package airlockv1_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// TestMaxImageChunkBytes_IsWhatBrokerProtoSays: clients in other
// languages read the limit from broker.proto, not from Go.
func TestMaxImageChunkBytes_IsWhatBrokerProtoSays(t *testing.T) {
	b, err := os.ReadFile("broker.proto")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("A chunk of the tarball, at most %d MiB.", airlockv1.MaxImageChunkBytes>>20)
	if airlockv1.MaxImageChunkBytes%(1<<20) != 0 || !strings.Contains(string(b), want) {
		t.Errorf("broker.proto does not say %q of ImportImageRequest.data; MaxImageChunkBytes is %d", want, airlockv1.MaxImageChunkBytes)
	}
}
