package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// nodeBroker is one of several brokers behind a balancing client: it names
// itself in every response, as airlockd does, and knows only the jobs it
// ran.
type nodeBroker struct {
	airlockv1.UnimplementedBrokerServer
	addr   string
	health *health.Server
	// name is what it calls itself in responses; addr unless a test lies.
	name string

	mu sync.Mutex
	// refuse makes Spawn ResourceExhausted, as a full broker answers.
	refuse bool
	jobs   map[string]bool
	// tried are the job IDs of every Spawn that arrived, refused or not.
	tried    []string
	jobCalls int
}

func (b *nodeBroker) triedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.tried)
}

func (b *nodeBroker) Spawn(ctx context.Context, req *airlockv1.SpawnRequest) (*airlockv1.SpawnResponse, error) {
	if _, ok := auth.Caller(ctx); !ok {
		return nil, status.Error(codes.Internal, "no caller: the token did not arrive")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tried = append(b.tried, req.GetJobId())
	if b.refuse {
		return nil, status.Error(codes.ResourceExhausted, "full")
	}
	b.jobs[req.GetJobId()] = true
	return &airlockv1.SpawnResponse{JobId: req.GetJobId(), Node: b.name}, nil
}

func (b *nodeBroker) SpawnStream(req *airlockv1.SpawnStreamRequest, s grpc.ServerStreamingServer[airlockv1.SpawnStreamResponse]) error {
	id := req.GetSpawn().GetJobId()
	b.mu.Lock()
	b.jobs[id] = true
	b.mu.Unlock()
	if err := s.Send(&airlockv1.SpawnStreamResponse{JobId: id, Event: &airlockv1.SpawnStreamResponse_Accepted{Accepted: &airlockv1.JobAccepted{Node: b.name}}}); err != nil {
		return err
	}
	// The job waits for its approval, as one whose command asks does.
	<-s.Context().Done()
	return nil
}

// job answers a job-scoped call: NotFound unless this broker ran it.
func (b *nodeBroker) job(id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.jobCalls++
	if !b.jobs[id] {
		return status.Errorf(codes.NotFound, "job %q: not here", id)
	}
	return nil
}

func (b *nodeBroker) GetJob(_ context.Context, req *airlockv1.GetJobRequest) (*airlockv1.GetJobResponse, error) {
	if err := b.job(req.GetJobId()); err != nil {
		return nil, err
	}
	return &airlockv1.GetJobResponse{Job: &airlockv1.Job{JobId: req.GetJobId(), Node: b.name}}, nil
}

func (b *nodeBroker) Cancel(_ context.Context, req *airlockv1.CancelRequest) (*airlockv1.CancelResponse, error) {
	return &airlockv1.CancelResponse{Cancelled: true}, b.job(req.GetJobId())
}

func (b *nodeBroker) Approve(_ context.Context, req *airlockv1.ApproveRequest) (*airlockv1.ApproveResponse, error) {
	return &airlockv1.ApproveResponse{}, b.job(req.GetJobId())
}

func (b *nodeBroker) spawned() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.jobs)
}

func (b *nodeBroker) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	b.health.SetServingStatus(airlockv1.Broker_ServiceDesc.ServiceName, st)
}

// startNodes serves n nodeBrokers on loopback, with health starting at
// st, and TLS when cert is set.
func startNodes(t *testing.T, n int, st healthpb.HealthCheckResponse_ServingStatus, cert *tls.Certificate) []*nodeBroker {
	t.Helper()
	a, err := auth.New([]byte(testToken))
	if err != nil {
		t.Fatal(err)
	}
	var out []*nodeBroker
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor())}
		if cert != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS13})))
		}
		g := grpc.NewServer(opts...)
		b := &nodeBroker{addr: l.Addr().String(), name: l.Addr().String(), health: health.NewServer(), jobs: map[string]bool{}}
		b.setHealth(st)
		airlockv1.RegisterBrokerServer(g, b)
		healthpb.RegisterHealthServer(g, b.health)
		done := make(chan struct{})
		go func() { defer close(done); _ = g.Serve(l) }()
		t.Cleanup(func() { g.Stop(); <-done })
		out = append(out, b)
	}
	return out
}

// dialNodes balances over nodes with a manual resolver, as a client over a
// headless Service's DNS name does.
func dialNodes(t *testing.T, nodes []*nodeBroker, opts ...client.Option) *client.Conn {
	t.Helper()
	conn, _ := dialNodesResolver(t, nodes, opts...)
	return conn
}

// dialNodesResolver is dialNodes that also returns the resolver, for a
// test that changes its addresses.
func dialNodesResolver(t *testing.T, nodes []*nodeBroker, opts ...client.Option) (*client.Conn, *manual.Resolver) {
	t.Helper()
	r := manual.NewBuilderWithScheme("airlocktest")
	var st resolver.State
	for _, n := range nodes {
		st.Addresses = append(st.Addresses, resolver.Address{Addr: n.addr})
	}
	r.InitialState(st)
	conn, err := client.DialTarget("airlocktest:///brokers.test:7443", tokenFile(t, testToken, 0o600), append(opts, client.WithResolver(r))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, r
}

// warmUp spawns until every node has run a job, so that every connection
// is ready and round robin goes round all of them, and returns the jobs
// each node ran so far.
func warmUp(t *testing.T, conn *client.Conn, nodes []*nodeBroker) map[*nodeBroker]int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before, all := map[*nodeBroker]int{}, true
		for _, n := range nodes {
			before[n] = n.spawned()
			all = all && before[n] > 0
		}
		if all {
			return before
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every node got a job within 10s: %v", before)
		}
		spawnN(t, conn, 1)
	}
}

func spawnN(t *testing.T, conn *client.Conn, n int) []*airlockv1.SpawnResponse {
	t.Helper()
	var out []*airlockv1.SpawnResponse
	for i := range n {
		resp, err := conn.Broker.Spawn(callCtx(t), &airlockv1.SpawnRequest{Profile: "vanilla"})
		if err != nil {
			t.Fatalf("spawn %d: %v", i, err)
		}
		out = append(out, resp)
	}
	return out
}

// TestDialTarget_BalancesAndJobCallsReachTheJobsNode: Spawns go round the
// brokers, each gets a job_id from the client, and GetJob, Cancel and
// Approve for each job reach the broker that ran it, never another.
func TestDialTarget_BalancesAndJobCallsReachTheJobsNode(t *testing.T) {
	nodes := startNodes(t, 3, healthpb.HealthCheckResponse_SERVING, nil)
	conn := dialNodes(t, nodes)
	before := warmUp(t, conn, nodes)
	resps := spawnN(t, conn, 30)
	for _, n := range nodes {
		if got := n.spawned() - before[n]; got != 10 {
			t.Errorf("node %s ran %d of 30 jobs, want 10 (round robin)", n.addr, got)
		}
	}
	for _, resp := range resps {
		id := resp.GetJobId()
		if id == "" {
			t.Fatal("a Spawn without a job_id reached the broker without one")
		}
		if got := conn.Node(id); got != resp.GetNode() {
			t.Errorf("Node(%s) = %q, want %q", id, got, resp.GetNode())
		}
		if _, err := conn.Broker.GetJob(callCtx(t), &airlockv1.GetJobRequest{JobId: id}); err != nil {
			t.Errorf("GetJob(%s): %v", id, err)
		}
		if _, err := conn.Broker.Cancel(callCtx(t), &airlockv1.CancelRequest{JobId: id}); err != nil {
			t.Errorf("Cancel(%s): %v", id, err)
		}
	}
	for _, n := range nodes {
		if n.jobCalls != 20 {
			t.Errorf("node %s answered %d job calls, want 20: only its own jobs' GetJob and Cancel", n.addr, n.jobCalls)
		}
	}
}

// TestDialTarget_ApproveReachesTheStreamsNode: the node of a streamed job
// is known from its accepted event, so Approve reaches it while the job
// waits.
func TestDialTarget_ApproveReachesTheStreamsNode(t *testing.T) {
	nodes := startNodes(t, 3, healthpb.HealthCheckResponse_SERVING, nil)
	conn := dialNodes(t, nodes)
	for i := range 6 {
		ctx, cancel := context.WithCancel(callCtx(t))
		s, err := conn.Broker.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: &airlockv1.SpawnRequest{}})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetJobId() == "" || conn.Node(ev.GetJobId()) != ev.GetAccepted().GetNode() {
			t.Fatalf("stream %d: job %q on %q, remembered %q", i, ev.GetJobId(), ev.GetAccepted().GetNode(), conn.Node(ev.GetJobId()))
		}
		_, err = conn.Broker.Approve(callCtx(t), &airlockv1.ApproveRequest{JobId: ev.GetJobId(), RequestId: "1", Decision: airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE})
		if err != nil {
			t.Errorf("Approve on stream %d: %v", i, err)
		}
		cancel()
	}
}

// TestDialTarget_SkipsBrokersThatAreNotServing: a broker whose health is
// NOT_SERVING (draining, or full) gets no Spawn; once SERVING it gets
// them again.
func TestDialTarget_SkipsBrokersThatAreNotServing(t *testing.T) {
	nodes := startNodes(t, 3, healthpb.HealthCheckResponse_SERVING, nil)
	nodes[1].setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	conn := dialNodes(t, nodes)
	spawnN(t, conn, 20)
	if got := nodes[1].spawned(); got != 0 {
		t.Fatalf("the NOT_SERVING broker ran %d jobs", got)
	}
	nodes[1].setHealth(healthpb.HealthCheckResponse_SERVING)
	deadline := time.Now().Add(10 * time.Second)
	for nodes[1].spawned() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the broker got no job within 10s of serving again")
		}
		spawnN(t, conn, 1)
	}
}

// TestDialTarget_RetriesAFullBrokersSpawnElsewhere: a Spawn refused with
// ResourceExhausted is sent again, with the same job_id, and completes on
// another broker.
func TestDialTarget_RetriesAFullBrokersSpawnElsewhere(t *testing.T) {
	nodes := startNodes(t, 3, healthpb.HealthCheckResponse_SERVING, nil)
	nodes[0].refuse = true
	conn := dialNodes(t, nodes)
	// round_robin picks among the brokers it is connected to, and the full
	// one may connect last: spawn until it has been tried.
	resps := spawnN(t, conn, 12)
	deadline := time.Now().Add(10 * time.Second)
	for nodes[0].triedCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the full broker was never tried within 10s: the test proves nothing")
		}
		resps = append(resps, spawnN(t, conn, 1)...)
	}
	nodes[0].mu.Lock()
	tried := slices.Clone(nodes[0].tried)
	nodes[0].mu.Unlock()
	ran := map[string]bool{}
	for _, r := range resps {
		ran[r.GetJobId()] = true
		if r.GetNode() == nodes[0].name {
			t.Errorf("job %s ran on the full broker", r.GetJobId())
		}
	}
	for _, id := range tried {
		if !ran[id] {
			t.Errorf("refused job %s was retried under another job_id", id)
		}
	}
}

// TestDialTarget_NeverDialsANodeTheTargetDoesNotResolveTo: a broker that
// names another address (stale, or hostile) gets an error for the job's
// calls, and nothing is dialled.
func TestDialTarget_NeverDialsANodeTheTargetDoesNotResolveTo(t *testing.T) {
	nodes := startNodes(t, 2, healthpb.HealthCheckResponse_SERVING, nil)
	elsewhere, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer elsewhere.Close()
	for _, n := range nodes {
		n.name = elsewhere.Addr().String()
	}
	conn := dialNodes(t, nodes)
	resp := spawnN(t, conn, 1)[0]
	_, err = conn.Broker.GetJob(callCtx(t), &airlockv1.GetJobRequest{JobId: resp.GetJobId()})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not among the addresses") {
		t.Errorf("GetJob = %v, want Unavailable naming the unknown node", err)
	}
	_, err = conn.Broker.GetJob(client.OnNode(callCtx(t), "10.9.9.9:7443"), &airlockv1.GetJobRequest{JobId: "x"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetJob on a node given by the caller = %v, want Unavailable", err)
	}
	elsewhere.(*net.TCPListener).SetDeadline(time.Now())
	if c, err := elsewhere.Accept(); err == nil {
		c.Close()
		t.Error("the client dialled the address a broker named")
	}
}

// TestDialTarget_ANodeTheResolverDropsStillServesItsJobs: a node leaves
// a headless Service's DNS answer once it is not ready (it drains), while
// its jobs run on: their calls still reach it, and new jobs do not.
func TestDialTarget_ANodeTheResolverDropsStillServesItsJobs(t *testing.T) {
	nodes := startNodes(t, 3, healthpb.HealthCheckResponse_SERVING, nil)
	conn, r := dialNodesResolver(t, nodes)
	warmUp(t, conn, nodes)
	var onDropped string
	for _, resp := range spawnN(t, conn, 3) {
		if resp.GetNode() == nodes[2].addr {
			onDropped = resp.GetJobId()
		}
	}
	if onDropped == "" {
		t.Fatal("no job on the node to drop")
	}
	r.UpdateState(resolver.State{Addresses: []resolver.Address{{Addr: nodes[0].addr}, {Addr: nodes[1].addr}}})
	deadline := time.Now().Add(10 * time.Second)
	for before := nodes[2].spawned(); ; {
		// Once round_robin has the new list, the dropped node gets none of
		// a round of jobs.
		spawnN(t, conn, 6)
		if nodes[2].spawned() == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dropped node still gets jobs after 10s")
		}
		before = nodes[2].spawned()
	}
	if _, err := conn.Broker.GetJob(callCtx(t), &airlockv1.GetJobRequest{JobId: onDropped}); err != nil {
		t.Errorf("GetJob of a job on the dropped node: %v", err)
	}
}

// TestDialTarget_AFreshConnectionRoutesANamedNode: a connection whose
// first call is about a job on a given node (a CLI's get --node) waits for
// its resolver, then reaches that node.
func TestDialTarget_AFreshConnectionRoutesANamedNode(t *testing.T) {
	nodes := startNodes(t, 3, healthpb.HealthCheckResponse_SERVING, nil)
	spawner := dialNodes(t, nodes)
	warmUp(t, spawner, nodes)
	resp := spawnN(t, spawner, 1)[0]
	fresh := dialNodes(t, nodes)
	_, err := fresh.Broker.GetJob(client.OnNode(callCtx(t), resp.GetNode()), &airlockv1.GetJobRequest{JobId: resp.GetJobId()})
	if err != nil {
		t.Errorf("GetJob on node %s from a fresh connection: %v", resp.GetNode(), err)
	}
}

// TestDialTarget_PlaintextStaysOnLoopback: without TLS, a target that
// resolves to any address beyond loopback reaches no broker at all.
func TestDialTarget_PlaintextStaysOnLoopback(t *testing.T) {
	r := manual.NewBuilderWithScheme("airlocktest")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: "127.0.0.1:1"}, {Addr: "192.0.2.7:7443"}}})
	conn, err := client.DialTarget("airlocktest:///brokers.test:7443", tokenFile(t, testToken, 0o600), client.WithResolver(r))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = conn.Broker.Spawn(callCtx(t), &airlockv1.SpawnRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "need TLS") {
		t.Errorf("Spawn = %v, want Unavailable saying TLS is needed", err)
	}
}

// TestDialTarget_RefusesBadTargets: what cannot be a target is refused
// before anything is dialled.
func TestDialTarget_RefusesBadTargets(t *testing.T) {
	tf := tokenFile(t, testToken, 0o600)
	for _, target := range []string{"dns:///no-port", "nosuchscheme:///h:1", "h"} {
		if conn, err := client.DialTarget(target, tf); err == nil {
			conn.Close()
			t.Errorf("DialTarget(%q) succeeded", target)
		}
	}
	if _, err := client.DialTarget("dns:///h:1", ""); !errors.Is(err, auth.ErrNoToken) {
		t.Errorf("no token: %v, want ErrNoToken", err)
	}
}

// TestDialTarget_TLSAndTokenReachEveryBroker: over TLS, every broker is
// verified as the target's name, on the balanced connection and on the
// per-node ones, and the token arrives on both.
func TestDialTarget_TLSAndTokenReachEveryBroker(t *testing.T) {
	cert, pool := selfSigned(t, "brokers.test")
	nodes := startNodes(t, 2, healthpb.HealthCheckResponse_SERVING, &cert)
	conn := dialNodes(t, nodes, client.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}))
	warmUp(t, conn, nodes)
	for _, resp := range spawnN(t, conn, 4) {
		if _, err := conn.Broker.GetJob(callCtx(t), &airlockv1.GetJobRequest{JobId: resp.GetJobId()}); err != nil {
			t.Errorf("GetJob(%s) over TLS: %v", resp.GetJobId(), err)
		}
	}
	for _, n := range nodes {
		if n.jobCalls == 0 || n.jobCalls > 4 {
			t.Errorf("node %s answered %d job calls, want its own jobs' only", n.addr, n.jobCalls)
		}
	}
}

// selfSigned is a certificate for name, and a pool that trusts it.
func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestEndpoint_RefusesMixedOrBadFlags: the CLI's broker flags combine one
// way only, and a CA file must hold a certificate.
func TestEndpoint_RefusesMixedOrBadFlags(t *testing.T) {
	tf := tokenFile(t, testToken, 0o600)
	notPEM := tokenFile(t, "not a certificate", 0o600)
	tests := []struct {
		name string
		e    client.Endpoint
		want string
	}{
		{"tls without a target", client.Endpoint{Addr: "127.0.0.1:7443", TLSCA: notPEM, TokenFile: tf}, "--tls-ca goes with --target"},
		{"a target and an address", client.Endpoint{Addr: "127.0.0.1:7443", Target: "dns:///h:1", TokenFile: tf}, "not both"},
		{"a CA file without a certificate", client.Endpoint{Target: "dns:///h:1", TLSCA: notPEM, TokenFile: tf}, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tt.e.Dial()
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
}
