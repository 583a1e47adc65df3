package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock/airlock/images/imageref"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// Bounds of an image import.
const (
	// DefaultMaxImageBytes is Config.MaxImageBytes when zero.
	DefaultMaxImageBytes = 512 << 20
	// DefaultImportIdle is Config.ImportIdle when zero: a client that
	// stops sending holds the single import slot no longer than this.
	DefaultImportIdle = 30 * time.Second
)

// ImportImage spools the streamed tarball to a file of the broker's own,
// counting every byte against the cap as it arrives, and hands the file
// to the image store. The file is removed whatever happens.
func (s *Server) ImportImage(stream airlockv1.Broker_ImportImageServer) (retErr error) {
	if s.images == nil {
		return fmt.Errorf("%w: this broker serves no image store", ErrPrecondition)
	}
	// One import at a time: each spools up to the cap, and unpacks as
	// much again, on the broker's disk.
	select {
	case s.importing <- struct{}{}:
		defer func() { <-s.importing }()
	default:
		return fmt.Errorf("%w: another image import is running", ErrOverloaded)
	}
	recv := idleRecv(stream, s.importIdle)
	first, err := recv()
	if errors.Is(err, io.EOF) {
		return badField("name", "name is required in the first message")
	}
	if err != nil {
		return err
	}
	name := first.GetName()
	if err := checkImageName(name); err != nil {
		return err
	}
	if len(first.GetData()) > 0 {
		return badField("data", "the first message carries the name only; data follows in the next ones")
	}
	f, err := os.CreateTemp(s.spoolDir, "import-*.tar")
	if err != nil {
		return fmt.Errorf("spool the image: %w", err)
	}
	defer func() {
		retErr = errors.Join(retErr, f.Close(), os.Remove(f.Name()))
	}()
	var n int64
	for {
		req, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if req.GetName() != "" {
			return badField("name", "only the first message carries the name")
		}
		data := req.GetData()
		if len(data) > airlockv1.MaxImageChunkBytes {
			return badField("data", "a message's data is %d bytes; at most %d", len(data), airlockv1.MaxImageChunkBytes)
		}
		n += int64(len(data))
		if n > s.maxImageBytes {
			return fmt.Errorf("%w: the image tarball is over %d bytes, this broker's cap (airlockd --max-image-bytes)", ErrTooLarge, s.maxImageBytes)
		}
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("spool the image: %w", err)
		}
	}
	if n == 0 {
		return badField("data", "no image data was sent")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spool the image: %w", err)
	}
	info, err := s.images.ImportImage(stream.Context(), name, f)
	if err != nil {
		return err
	}
	s.log.Info("image imported", "name", name, "digest", info.Digest, "size", info.Size, "created", info.Created)
	return stream.SendAndClose(&airlockv1.ImportImageResponse{Image: imageProto(info), Created: info.Created})
}

// idleRecv returns a Recv of stream that fails with DeadlineExceeded when
// no message arrives within idle: the handler then returns, which ends
// the stream and the Recv still waiting in its goroutine.
func idleRecv(stream airlockv1.Broker_ImportImageServer, idle time.Duration) func() (*airlockv1.ImportImageRequest, error) {
	type msg struct {
		req *airlockv1.ImportImageRequest
		err error
	}
	ch := make(chan msg)
	done := stream.Context().Done()
	go func() {
		for {
			req, err := stream.Recv()
			select {
			case ch <- msg{req, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	timer := time.NewTimer(idle)
	return func() (*airlockv1.ImportImageRequest, error) {
		timer.Reset(idle)
		select {
		case m := <-ch:
			return m.req, m.err
		case <-timer.C:
			return nil, fmt.Errorf("%w: no image data for %s: the upload is ended, and the import slot freed", context.DeadlineExceeded, idle)
		case <-done:
			return nil, stream.Context().Err()
		}
	}
}

// ListImages lists the imported images.
func (s *Server) ListImages(ctx context.Context, _ *airlockv1.ListImagesRequest) (*airlockv1.ListImagesResponse, error) {
	if s.images == nil {
		return nil, fmt.Errorf("%w: this broker serves no image store", ErrPrecondition)
	}
	list, err := s.images.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	resp := &airlockv1.ListImagesResponse{}
	for _, i := range list {
		resp.Images = append(resp.Images, imageProto(i))
	}
	return resp, nil
}

// RemoveImage removes an imported image, or every digest of a name.
func (s *Server) RemoveImage(ctx context.Context, req *airlockv1.RemoveImageRequest) (*airlockv1.RemoveImageResponse, error) {
	if s.images == nil {
		return nil, fmt.Errorf("%w: this broker serves no image store", ErrPrecondition)
	}
	if err := checkImageName(req.GetName()); err != nil {
		return nil, err
	}
	if d := req.GetDigest(); d != "" && !imageref.ValidDigest(d) {
		return nil, badField("digest", "digest must be %s, or empty for every digest of the name", imageref.DigestRule)
	}
	gone, err := s.images.RemoveImage(ctx, req.GetName(), req.GetDigest())
	if err != nil {
		return nil, err
	}
	resp := &airlockv1.RemoveImageResponse{}
	for _, i := range gone {
		s.log.Info("image removed", "name", i.Name, "digest", i.Digest)
		resp.Removed = append(resp.Removed, imageProto(i))
	}
	return resp, nil
}

// checkImageName refuses a name imageref does not take, naming the field
// and the rule.
func checkImageName(name string) error {
	if !imageref.ValidName(name) {
		return badField("name", "name %s must be %s", quoteName(name), imageref.NameRule)
	}
	return nil
}

func imageProto(i job.ImageInfo) *airlockv1.Image {
	return &airlockv1.Image{Name: i.Name, Digest: i.Digest, SizeBytes: i.Size, Imported: timestamppb.New(i.Imported), Profiles: i.Profiles}
}
