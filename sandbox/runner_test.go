package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// fakeNamespaces answers the one call containerd.New makes (the default
// namespace's labels), so that New gets past its connection without a
// containerd. It is a stand-in for the external daemon, speaking its API.
type fakeNamespaces struct {
	namespacesapi.UnimplementedNamespacesServer
}

func (fakeNamespaces) Get(_ context.Context, req *namespacesapi.GetNamespaceRequest) (*namespacesapi.GetNamespaceResponse, error) {
	return &namespacesapi.GetNamespaceResponse{Namespace: &namespacesapi.Namespace{Name: req.Name}}, nil
}

// connCounter counts the connections a gRPC server holds open, and closes
// closed when the last one ends.
type connCounter struct {
	mu     sync.Mutex
	open   int
	closed chan struct{}
}

func (c *connCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (c *connCounter) HandleRPC(context.Context, stats.RPCStats)                         {}
func (c *connCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *connCounter) HandleConn(_ context.Context, s stats.ConnStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s.(type) {
	case *stats.ConnBegin:
		c.open++
	case *stats.ConnEnd:
		if c.open--; c.open == 0 {
			close(c.closed)
		}
	}
}

func TestNew_AFailedStepUndoesTheConnectionAndTheTeardownWorkers(t *testing.T) {
	for _, tt := range []struct {
		name string
		// stateDir makes the state dir in dir and returns it.
		stateDir func(t *testing.T, dir string) string
	}{
		// New fails making its jobs dir, after it has connected and
		// started its teardown workers.
		{"state dir is a file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "state")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		// New fails later, in its start-up reap: the stand-in answers
		// nothing but namespaces.
		{"containerd refuses the reap", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "state")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaks := goleak.IgnoreCurrent()
			// Not t.TempDir(): a unix socket's path must stay under 108 bytes.
			dir, err := os.MkdirTemp("", "ctd-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			sock := filepath.Join(dir, "containerd.sock")
			lis, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			conns := &connCounter{closed: make(chan struct{})}
			srv := grpc.NewServer(grpc.StatsHandler(conns))
			namespacesapi.RegisterNamespacesServer(srv, fakeNamespaces{})
			served := make(chan struct{})
			go func() { defer close(served); _ = srv.Serve(lis) }()

			r, err := New(context.Background(), Config{Address: sock, StateDir: tt.stateDir(t, dir), Logger: slog.New(slog.DiscardHandler),
				UserNSDir: filepath.Join(dir, "userns")})
			if err == nil {
				r.Close()
				t.Fatal("New succeeded")
			}
			t.Logf("New: %v", err)

			select {
			case <-conns.closed:
			case <-time.After(30 * time.Second):
				t.Fatal("a failed New left its connection to containerd open")
			}
			srv.Stop()
			<-served
			// The teardown workers and the client's goroutines are gone too.
			goleak.VerifyNone(t, leaks)
		})
	}
}

func TestUndo_RunsLastFirstUnderACancelledContextAndJoinsErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errFirst, errLast := errors.New("first"), errors.New("last")
	var order []int
	var u undo
	for i, stepErr := range []error{errFirst, nil, errLast} {
		u.Push(func(ctx context.Context) error {
			order = append(order, i)
			if ctx.Err() != nil {
				t.Errorf("step %d ran under a cancelled context", i)
			}
			return stepErr
		})
	}
	if err := u.Run(ctx); !errors.Is(err, errFirst) || !errors.Is(err, errLast) {
		t.Fatalf("Run = %v, want both steps' errors", err)
	}
	if want := []int{2, 1, 0}; !slices.Equal(order, want) {
		t.Fatalf("steps ran in order %v, want %v", order, want)
	}
	if err := u.Run(ctx); err != nil || len(order) != 3 {
		t.Fatalf("a second Run ran steps again (%v, %v)", order, err)
	}
}
