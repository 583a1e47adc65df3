package client

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// Bounds of what a router remembers. Node names come from brokers'
// responses, so neither list grows with what a broker says.
const (
	// maxRememberedJobs is how many jobs' nodes are kept, the oldest
	// forgotten first; a forgotten job's calls are balanced like any other.
	maxRememberedJobs = 4096
	// maxKnownAddresses bounds the addresses the resolver has given that
	// a job's calls may be sent to, the oldest forgotten first; and so the
	// per-node connections, which are only ever made to those.
	maxKnownAddresses = 256
)

// router sends a job's GetJob, Cancel and Approve to the broker that runs
// it. Every broker names itself (its advertised address) in each response
// and in a stream's accepted event; the router remembers the node of every
// job this connection spawned, and calls that node on a connection of its
// own, with the same credentials. It dials only addresses the resolver
// has given: a broker's word alone never makes it dial anywhere.
type router struct {
	// authority is the target's host:port, which per-node connections
	// present, so that TLS verifies every broker as the target's name.
	authority string
	plaintext bool
	dialOpts  []grpc.DialOption

	// cc is the balanced connection, whose resolver fills addrs;
	// resolved is closed once it first has (or has failed to).
	cc           *grpc.ClientConn
	resolved     chan struct{}
	resolvedOnce sync.Once

	mu sync.Mutex
	// addrs holds every address the resolver has given, seen in order,
	// oldest first; current is how many its last list had.
	addrs   map[string]bool
	seen    []string
	current int
	// jobs maps a job ID to its node; order is the IDs, oldest first.
	jobs  map[string]string
	order []string
	conns map[string]*grpc.ClientConn
}

func newRouter(authority string, plaintext bool, dialOpts []grpc.DialOption) *router {
	return &router{authority: authority, plaintext: plaintext, dialOpts: dialOpts, resolved: make(chan struct{}),
		addrs: map[string]bool{}, jobs: map[string]string{}, conns: map[string]*grpc.ClientConn{}}
}

// markResolved says the resolver has answered, with addresses or an error.
func (r *router) markResolved() { r.resolvedOnce.Do(func() { close(r.resolved) }) }

// waitResolved waits for the resolver's first answer: a connection whose
// first call is about a job (a CLI's get --node) has not resolved its
// target yet, and would find no node allowed.
func (r *router) waitResolved(ctx context.Context) error {
	select {
	case <-r.resolved:
		return nil
	default:
	}
	r.cc.Connect()
	select {
	case <-r.resolved:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// setAddresses takes the resolver's current list. An address it drops stays
// known: a node leaves a headless Service's DNS answer once it is not
// ready (draining, or full), while its jobs still run and wait for their
// approvals. Past maxKnownAddresses the oldest is forgotten, and its
// connection closed.
func (r *router) setAddresses(addrs []string) {
	r.mu.Lock()
	r.current = len(addrs)
	var gone []*grpc.ClientConn
	for _, a := range addrs {
		if r.addrs[a] {
			continue
		}
		r.addrs[a] = true
		r.seen = append(r.seen, a)
		for len(r.seen) > maxKnownAddresses {
			old := r.seen[0]
			r.seen = slices.Delete(r.seen, 0, 1)
			delete(r.addrs, old)
			if cc := r.conns[old]; cc != nil {
				gone = append(gone, cc)
				delete(r.conns, old)
			}
		}
	}
	r.mu.Unlock()
	r.markResolved()
	for _, cc := range gone {
		cc.Close()
	}
}

// remember notes that job runs on node.
func (r *router) remember(job, node string) {
	if job == "" || node == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.jobs[job]; !ok {
		r.order = append(r.order, job)
	}
	r.jobs[job] = node
	for len(r.order) > maxRememberedJobs {
		delete(r.jobs, r.order[0])
		r.order = slices.Delete(r.order, 0, 1)
	}
}

// Node is the node a job this connection spawned ran on, as the broker
// named it; empty when unknown.
func (c *Conn) Node(jobID string) string {
	if c.router == nil {
		return ""
	}
	c.router.mu.Lock()
	defer c.router.mu.Unlock()
	return c.router.jobs[jobID]
}

type nodeKey struct{}

// OnNode sends the job-scoped calls (GetJob, Cancel, Approve) made with
// ctx to node, such as a SpawnResponse's node kept by another process. The
// node must still be one of the target's addresses.
func OnNode(ctx context.Context, node string) context.Context {
	return context.WithValue(ctx, nodeKey{}, node)
}

// connFor returns the connection for a call about job: nil for the
// balanced one (the node is unknown, or the target is one broker), or the
// node's own. A node the resolver does not give is an error, so that a
// stale or hostile name never makes the client dial it.
func (r *router) connFor(ctx context.Context, job string) (*grpc.ClientConn, error) {
	node, _ := ctx.Value(nodeKey{}).(string)
	if node == "" {
		r.mu.Lock()
		node = r.jobs[job]
		r.mu.Unlock()
	}
	if node == "" {
		return nil, nil
	}
	if err := r.waitResolved(ctx); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.addrs[node] {
		return nil, status.Errorf(codes.Unavailable, "job %q: its node %q is %v; it cannot be reached through this connection", job, node, errNotANode)
	}
	if len(r.addrs) == 1 && r.current == 1 {
		// One broker: the balanced connection is the node's.
		return nil, nil
	}
	if cc := r.conns[node]; cc != nil {
		return cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+node, append(slices.Clip(r.dialOpts), grpc.WithAuthority(r.authority))...)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	r.conns[node] = cc
	return cc, nil
}

func (r *router) close() {
	r.mu.Lock()
	conns := r.conns
	r.conns = map[string]*grpc.ClientConn{}
	r.mu.Unlock()
	for _, cc := range conns {
		cc.Close()
	}
}

// jobScoped are the calls that must reach the job's node.
var jobScoped = map[string]bool{
	airlockv1.Broker_GetJob_FullMethodName:  true,
	airlockv1.Broker_Cancel_FullMethodName:  true,
	airlockv1.Broker_Approve_FullMethodName: true,
}

// unary gives a Spawn without a job_id one, so that every retry of it
// carries the same key, remembers where a Spawn ran, and sends job-scoped
// calls to their node.
func (r *router) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	switch {
	case method == airlockv1.Broker_Spawn_FullMethodName:
		sr, ok := req.(*airlockv1.SpawnRequest)
		if !ok {
			break
		}
		req = withJobID(sr)
		err := invoker(ctx, method, req, reply, cc, opts...)
		if resp, ok := reply.(*airlockv1.SpawnResponse); ok && err == nil {
			r.remember(resp.GetJobId(), resp.GetNode())
		}
		return err
	case jobScoped[method]:
		j, ok := req.(interface{ GetJobId() string })
		if !ok {
			break
		}
		node, err := r.connFor(ctx, j.GetJobId())
		if err != nil {
			return err
		}
		if node != nil {
			return node.Invoke(ctx, method, req, reply, opts...)
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// withJobID is req with a new job_id when it has none. The request is
// copied, never changed: callers reuse one request for many jobs.
func withJobID(req *airlockv1.SpawnRequest) *airlockv1.SpawnRequest {
	if req == nil || req.GetJobId() != "" {
		return req
	}
	c := proto.CloneOf(req)
	c.JobId = uuid.NewString()
	return c
}

// stream does for SpawnStream what unary does for Spawn: the node is
// learnt from the accepted event, before any approval is asked.
func (r *router) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || method != airlockv1.Broker_SpawnStream_FullMethodName {
		return s, err
	}
	return &spawnStream{ClientStream: s, r: r}, nil
}

type spawnStream struct {
	grpc.ClientStream
	r *router
}

func (s *spawnStream) SendMsg(m any) error {
	if req, ok := m.(*airlockv1.SpawnStreamRequest); ok && req.GetSpawn() != nil && req.GetSpawn().GetJobId() == "" {
		m = &airlockv1.SpawnStreamRequest{Spawn: withJobID(req.GetSpawn())}
	}
	return s.ClientStream.SendMsg(m)
}

func (s *spawnStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if ev, ok := m.(*airlockv1.SpawnStreamResponse); ok && err == nil {
		if a := ev.GetAccepted(); a != nil {
			s.r.remember(ev.GetJobId(), a.GetNode())
		}
	}
	return err
}
