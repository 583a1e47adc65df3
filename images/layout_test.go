package images

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func layoutBlob(data string) LayoutBlob {
	return LayoutBlob{Digest: digest.FromString(data), Size: int64(len(data)), Content: strings.NewReader(data)}
}

// TestWriteLayout_SortedPinnedAndOnceEach: blobs in digest order whatever
// order they come in, each digest once, then index.json and oci-layout,
// every header pinned.
func TestWriteLayout_SortedPinnedAndOnceEach(t *testing.T) {
	a, b, c := layoutBlob("a"), layoutBlob("b"), layoutBlob("c")
	var buf bytes.Buffer
	if err := WriteLayout(&buf, []LayoutBlob{c, a, b, layoutBlob("a")}, []byte("INDEX"), []byte("LAYOUT")); err != nil {
		t.Fatal(err)
	}
	entries, order := readTar(t, buf.Bytes())
	sorted := []string{a.Digest.Encoded(), b.Digest.Encoded(), c.Digest.Encoded()}
	slices.Sort(sorted)
	want := []string{"blobs/", "blobs/sha256/"}
	for _, e := range sorted {
		want = append(want, "blobs/sha256/"+e)
	}
	want = append(want, "index.json", "oci-layout")
	if !slices.Equal(order, want) {
		t.Fatalf("entries %q, want %q", order, want)
	}
	if got := string(entries["blobs/sha256/"+a.Digest.Encoded()].data); got != "a" {
		t.Errorf("blob a holds %q", got)
	}
	if string(entries["index.json"].data) != "INDEX" || string(entries["oci-layout"].data) != "LAYOUT" {
		t.Errorf("index.json %q, oci-layout %q", entries["index.json"].data, entries["oci-layout"].data)
	}
	for name, e := range entries {
		h := e.hdr
		if h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || (h.Mode != 0o644 && h.Mode != 0o755) {
			t.Errorf("%s: mtime %v uid %d gid %d uname %q mode %#o", name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Mode)
		}
	}
}

func TestWriteLayout_Refuses(t *testing.T) {
	shrunk := layoutBlob("abc")
	shrunk.Content = strings.NewReader("ab")
	grown := layoutBlob("abc")
	grown.Content = strings.NewReader("abcd")
	sha512 := layoutBlob("x")
	sha512.Digest = digest.Digest("sha512:" + strings.Repeat("ab", 64))
	for _, tc := range []struct {
		name string
		blob LayoutBlob
	}{
		{"a blob shorter than its size", shrunk},
		{"a blob longer than its size", grown},
		{"a digest that is not sha256", sha512},
		{"a malformed digest", LayoutBlob{Digest: "sha256:../../etc", Content: strings.NewReader("")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := WriteLayout(io.Discard, []LayoutBlob{tc.blob}, []byte("{}"), []byte("{}")); err == nil {
				t.Error("WriteLayout = nil, want an error")
			}
		})
	}
}
