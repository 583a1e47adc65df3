package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/images/imageref"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// fakeImages is an ImageStore that keeps what it was given.
type fakeImages struct {
	mu       sync.Mutex
	imported map[string][]byte // name to the bytes of the spooled file
	spooled  []string          // the files it was handed
	err      error
}

func (f *fakeImages) ImportImage(_ context.Context, name string, file *os.File) (job.ImageInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.spooled = append(f.spooled, file.Name())
	if f.err != nil {
		return job.ImageInfo{}, f.err
	}
	b, err := io.ReadAll(file)
	if err != nil {
		return job.ImageInfo{}, err
	}
	if f.imported == nil {
		f.imported = map[string][]byte{}
	}
	f.imported[name] = b
	return job.ImageInfo{Name: name, Digest: "sha256:" + strings.Repeat("a", 64), Size: int64(len(b)), Imported: time.Unix(1, 0), Created: true}, nil
}

func (f *fakeImages) ListImages(context.Context) ([]job.ImageInfo, error) {
	return []job.ImageInfo{{Name: "a", Digest: "sha256:" + strings.Repeat("b", 64), Profiles: []string{"p"}}}, nil
}

func (f *fakeImages) RemoveImage(_ context.Context, name, digest string) ([]job.ImageInfo, error) {
	if name == "used" {
		return nil, fmt.Errorf("%w: profile p runs it", job.ErrImageInUse)
	}
	if name == "missing" {
		return nil, fmt.Errorf("%w: %s", job.ErrImageNotFound, name)
	}
	return []job.ImageInfo{{Name: name, Digest: digest}}, nil
}

func importImage(t *testing.T, c airlockv1.BrokerClient, msgs ...*airlockv1.ImportImageRequest) (*airlockv1.ImportImageResponse, error) {
	t.Helper()
	stream, err := c.ImportImage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
	}
	return stream.CloseAndRecv()
}

func TestImportImage_SpoolsTheStreamAndRemovesTheFile(t *testing.T) {
	store := &fakeImages{}
	spool := t.TempDir()
	c, _ := newBrokerWith(t, &fakeRunner{}, testToken, broker.Config{Images: store, ImageSpoolDir: spool})
	resp, err := importImage(t, c, &airlockv1.ImportImageRequest{Name: "my-agent"},
		&airlockv1.ImportImageRequest{Data: []byte("first ")}, &airlockv1.ImportImageRequest{Data: []byte("second")})
	if err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	if got := string(store.imported["my-agent"]); got != "first second" {
		t.Errorf("the store read %q", got)
	}
	if resp.Image.Name != "my-agent" || resp.Image.SizeBytes != 12 || !resp.Created {
		t.Errorf("response %v", resp)
	}
	if !strings.HasPrefix(store.spooled[0], spool+"/") {
		t.Errorf("spooled to %s, not under %s", store.spooled[0], spool)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("the spool dir holds %d files", len(left))
	}
}

// TestImportImage_RefusesAtTheDoor: each mistake is refused with its code,
// naming the field or the limit, and leaves no spooled file.
func TestImportImage_RefusesAtTheDoor(t *testing.T) {
	store := &fakeImages{}
	spool := t.TempDir()
	c, _ := newBrokerWith(t, &fakeRunner{}, testToken, broker.Config{Images: store, ImageSpoolDir: spool, MaxImageBytes: 10})
	chunk := func(s string) *airlockv1.ImportImageRequest { return &airlockv1.ImportImageRequest{Data: []byte(s)} }
	named := func(n string) *airlockv1.ImportImageRequest { return &airlockv1.ImportImageRequest{Name: n} }
	tests := []struct {
		name  string
		msgs  []*airlockv1.ImportImageRequest
		code  codes.Code
		field string
		want  string
	}{
		{"no name", []*airlockv1.ImportImageRequest{chunk("x")}, codes.InvalidArgument, "name", "name"},
		{"bad name", []*airlockv1.ImportImageRequest{named("../etc"), chunk("x")}, codes.InvalidArgument, "name", imageref.NameRule},
		{"data with the name", []*airlockv1.ImportImageRequest{{Name: "a", Data: []byte("x")}}, codes.InvalidArgument, "data", "carries the name only"},
		{"name twice", []*airlockv1.ImportImageRequest{named("a"), named("b")}, codes.InvalidArgument, "name", "only the first message"},
		{"no data", []*airlockv1.ImportImageRequest{named("a")}, codes.InvalidArgument, "data", "no image data"},
		{"over the cap", []*airlockv1.ImportImageRequest{named("a"), chunk("123456"), chunk("789012")}, codes.ResourceExhausted, "", "over 10 bytes"},
		{"chunk too big", []*airlockv1.ImportImageRequest{named("a"), chunk(strings.Repeat("x", airlockv1.MaxImageChunkBytes+1))}, codes.InvalidArgument, "data", fmt.Sprintf("at most %d", airlockv1.MaxImageChunkBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := importImage(t, c, tt.msgs...)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.want) {
				t.Fatalf("ImportImage: %v, want %s with %q", err, tt.code, tt.want)
			}
			if tt.field != "" && fieldOf(st) != tt.field {
				t.Errorf("BadRequest names %q, want %q", fieldOf(st), tt.field)
			}
			if left, _ := os.ReadDir(spool); len(left) != 0 {
				t.Errorf("the spool dir holds %d files", len(left))
			}
		})
	}
	if len(store.spooled) != 0 {
		t.Errorf("the store was handed %v", store.spooled)
	}
}

func fieldOf(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			return br.FieldViolations[0].Field
		}
	}
	return ""
}

func TestImages_StoreErrorsMapToCodes(t *testing.T) {
	store := &fakeImages{err: fmt.Errorf("%w: layer 0: \"app/su\": a setuid file", job.ErrImageRefused)}
	spool := t.TempDir()
	c, _ := newBrokerWith(t, &fakeRunner{}, testToken, broker.Config{Images: store, ImageSpoolDir: spool})
	_, err := importImage(t, c, &airlockv1.ImportImageRequest{Name: "a"}, &airlockv1.ImportImageRequest{Data: []byte("x")})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `"app/su": a setuid file`) {
		t.Errorf("a refused image: %v", err)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("the spool dir holds %d files after a refusal", len(left))
	}
	for _, tt := range []struct {
		req  *airlockv1.RemoveImageRequest
		code codes.Code
	}{
		{&airlockv1.RemoveImageRequest{Name: "used"}, codes.FailedPrecondition},
		{&airlockv1.RemoveImageRequest{Name: "missing"}, codes.NotFound},
		{&airlockv1.RemoveImageRequest{Name: "a", Digest: "sha256:abc"}, codes.InvalidArgument},
		{&airlockv1.RemoveImageRequest{Name: "A"}, codes.InvalidArgument},
		{&airlockv1.RemoveImageRequest{Name: "a", Digest: "sha256:" + strings.Repeat("c", 64)}, codes.OK},
	} {
		if _, err := c.RemoveImage(ctx(t), tt.req); status.Code(err) != tt.code {
			t.Errorf("RemoveImage(%v): %v, want %s", tt.req, err, tt.code)
		}
	}
	list, err := c.ListImages(ctx(t), &airlockv1.ListImagesRequest{})
	if err != nil || len(list.Images) != 1 || list.Images[0].Profiles[0] != "p" {
		t.Errorf("ListImages: %v %v", list, err)
	}
}

func TestImages_NeedTheAdminScope(t *testing.T) {
	c, _ := newScopedBroker(t, &fakeRunner{})
	for name, call := range map[string]func() error{
		"ListImages": func() error { _, err := c.ListImages(ctx(t), &airlockv1.ListImagesRequest{}, as(tokA)); return err },
		"RemoveImage": func() error {
			_, err := c.RemoveImage(ctx(t), &airlockv1.RemoveImageRequest{Name: "a"}, as(tokA))
			return err
		},
		"ImportImage": func() error {
			s, err := c.ImportImage(ctx(t), as(tokA))
			if err != nil {
				return err
			}
			_ = s.Send(&airlockv1.ImportImageRequest{Name: "a"})
			_, err = s.CloseAndRecv()
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s with a spawn and read token: %v, want PermissionDenied", name, err)
		}
	}
	// An admin token passes the door; this broker has no image store.
	if _, err := c.ListImages(ctx(t), &airlockv1.ListImagesRequest{}, as(tokAdm)); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("ListImages as admin without a store: %v, want FailedPrecondition", err)
	}
}

// blockingImages holds ImportImage until release is closed.
type blockingImages struct {
	fakeImages
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (b *blockingImages) ImportImage(ctx context.Context, name string, f *os.File) (job.ImageInfo, error) {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	return b.fakeImages.ImportImage(ctx, name, f)
}

func TestImportImage_OneAtATime(t *testing.T) {
	store := &blockingImages{entered: make(chan struct{}), release: make(chan struct{})}
	c, _ := newBrokerWith(t, &fakeRunner{}, testToken, broker.Config{Images: store, ImageSpoolDir: t.TempDir()})
	msgs := []*airlockv1.ImportImageRequest{{Name: "a"}, {Data: []byte("x")}}
	first := make(chan error, 1)
	go func() {
		_, err := importImage(t, c, msgs...)
		first <- err
	}()
	<-store.entered
	if _, err := importImage(t, c, msgs...); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "another image import") {
		t.Errorf("a second import while one runs: %v, want ResourceExhausted", err)
	}
	close(store.release)
	if err := <-first; err != nil {
		t.Errorf("the first import: %v", err)
	}
	if _, err := importImage(t, c, msgs...); err != nil {
		t.Errorf("an import after the first ended: %v", err)
	}
}

// An upload that stalls is ended after the idle time, and frees the one
// import slot for the next.
func TestImportImage_AStalledUploadFreesTheSlot(t *testing.T) {
	store := &fakeImages{}
	c, _ := newBrokerWith(t, &fakeRunner{}, testToken, broker.Config{Images: store, ImageSpoolDir: t.TempDir(), ImportIdle: 50 * time.Millisecond})
	for name, msgs := range map[string][]*airlockv1.ImportImageRequest{
		"before the name": nil,
		"after the name":  {{Name: "a"}},
		"after some data": {{Name: "a"}, {Data: []byte("x")}},
	} {
		stream, err := c.ImportImage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if err := stream.Send(m); err != nil {
				t.Fatal(err)
			}
		}
		// The stream stays open; the broker ends it.
		err = stream.RecvMsg(new(airlockv1.ImportImageResponse))
		if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "no image data for 50ms") {
			t.Errorf("%s: stalled upload ended with %v, want DeadlineExceeded naming the idle time", name, err)
		}
		if _, err := importImage(t, c, &airlockv1.ImportImageRequest{Name: "b"}, &airlockv1.ImportImageRequest{Data: []byte("y")}); err != nil {
			t.Errorf("%s: the next import: %v", name, err)
		}
	}
	if len(store.imported) != 1 || string(store.imported["b"]) != "y" {
		t.Errorf("imported %v, want b only", store.imported)
	}
}
