package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/containerd/namespaces"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/job"
)

// PoolConfig configures warm pools: sandboxes made ahead of their jobs,
// with their agents started and waiting for the start line when the agent
// knows it (images.Spec.WaitsForStart), else up to a created task; a job then
// skips everything but its input. A warm sandbox runs exactly one job and
// is never reused.
type PoolConfig struct {
	// Size is how many ready sandboxes each pool keeps.
	Size int
	// MaxIdle drains a pool that nobody claimed from for this long; its
	// next claim finds it empty, runs cold and starts the refill. Zero
	// keeps pools full.
	MaxIdle time.Duration
	// MinAvailable is the host's MemAvailable, in bytes, under which pools
	// give back their sandboxes and stop refilling until memory is back.
	MinAvailable int64
}

// DefaultPoolMinAvailable is PoolConfig.MinAvailable when zero.
const DefaultPoolMinAvailable = 512 << 20

// poolRetry bounds the back-off after a failed refill.
const poolRetry = 30 * time.Second

// memAvailable reads MemAvailable; a variable so tests can press memory.
var memAvailable = readMemAvailable

// warmPool keeps Size sandboxes ready for one profile and image.
type warmPool struct {
	r     *Runner
	cfg   PoolConfig
	image string
	p     *policy.Profile
	hash  string

	mu        sync.Mutex
	ready     []*box
	lastClaim time.Time
	// idle is set once the pool drained for lack of claims; the next
	// claim clears it.
	idle bool
	// running counts claimed sandboxes whose jobs have not finished. A
	// refill waits for them while the pool still has a sandbox to give,
	// so that making one does not take the cores from a job starting.
	running int

	kick chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

// poolMetrics are the runner's instruments: the pools' by profile, and
// where each sandbox's time went.
type poolMetrics struct {
	ready  *prometheus.GaugeVec
	claims *prometheus.CounterVec
	phases *prometheus.HistogramVec
	// cleanupFailures counts teardowns that failed, including those that
	// ran after their job returned, which no caller sees.
	cleanupFailures prometheus.Counter
}

func newPoolMetrics() *poolMetrics {
	return &poolMetrics{
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "airlock_pool_ready", Help: "Warm sandboxes ready to claim, by profile."}, []string{"profile"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_pool_claims_total", Help: "Jobs of a pooled profile by whether a warm sandbox was ready (hit) or not (miss)."}, []string{"profile", "result"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "airlock_sandbox_phase_seconds", Help: "Time per sandbox phase (prepare, container, network, task, bind, start, run, collect, teardown), by whether the sandbox was warm.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60}}, []string{"phase", "warm"}),
		cleanupFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_sandbox_cleanup_failures_total", Help: "Sandbox teardowns that failed; the start-up reap removes what they left."}),
	}
}

// Collectors are the runner's Prometheus instruments, for the broker's
// registry.
func (r *Runner) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.poolMetrics.ready, r.poolMetrics.claims, r.poolMetrics.phases, r.poolMetrics.cleanupFailures, r.filters.used}
}

// StartPool keeps cfg.Size sandboxes ready for jobs under profile p (as
// loaded, without per-request overrides) and its image. Only a job whose
// effective policy hashes the same claims one; any other runs cold.
func (r *Runner) StartPool(p *policy.Profile, cfg PoolConfig) error {
	if cfg.Size < 1 {
		return fmt.Errorf("pool for %s: size %d, want at least 1", p.Name, cfg.Size)
	}
	if cfg.MinAvailable == 0 {
		cfg.MinAvailable = DefaultPoolMinAvailable
	}
	image := p.Image()
	if _, ok := r.images[image]; !ok {
		return fmt.Errorf("pool for %s: image %q is not loaded", p.Name, image)
	}
	r.poolsMu.Lock()
	defer r.poolsMu.Unlock()
	if r.pools == nil {
		r.pools = map[string]*warmPool{}
	}
	if _, ok := r.pools[p.Name]; ok {
		return fmt.Errorf("pool for %s: already started", p.Name)
	}
	ctx, stop := context.WithCancel(namespaces.WithNamespace(context.Background(), footprint.Namespace))
	wp := &warmPool{
		r: r, cfg: cfg, image: image, p: p.Clone(), hash: p.Hash(),
		lastClaim: time.Now(), kick: make(chan struct{}, 1), stop: stop, done: make(chan struct{}),
	}
	r.pools[p.Name] = wp
	// Not recovered: the refill makes sandboxes for no job yet, from the
	// operator's profile, and reads nothing a job wrote.
	go wp.loop(ctx)
	return nil
}

// claim takes a ready sandbox for job, or returns nil. The caller calls
// done once the job has finished, which lets the pool refill.
func (r *Runner) claim(j *job.Job) (b *box, done func()) {
	r.poolsMu.Lock()
	wp := r.pools[j.Policy.Name]
	r.poolsMu.Unlock()
	if wp == nil || wp.image != j.Image || wp.hash != j.Policy.Hash() {
		return nil, func() {}
	}
	b = wp.take()
	result := "hit"
	if b == nil {
		result = "miss"
	}
	r.poolMetrics.claims.WithLabelValues(wp.p.Name, result).Inc()
	return b, wp.finished
}

// take pops the oldest ready sandbox. Only an empty pool is refilled at
// once; otherwise the refill waits for the job to finish.
func (wp *warmPool) take() *box {
	wp.mu.Lock()
	var b *box
	if len(wp.ready) > 0 {
		b, wp.ready = wp.ready[0], wp.ready[1:]
	}
	wp.lastClaim, wp.idle = time.Now(), false
	wp.running++
	n := len(wp.ready)
	wp.mu.Unlock()
	wp.r.poolMetrics.ready.WithLabelValues(wp.p.Name).Set(float64(n))
	if n == 0 {
		wp.wake()
	}
	return b
}

// finished records that a claiming job has finished, and wakes the refill.
func (wp *warmPool) finished() {
	wp.mu.Lock()
	wp.running--
	wp.mu.Unlock()
	wp.wake()
}

func (wp *warmPool) wake() {
	select {
	case wp.kick <- struct{}{}:
	default:
	}
}

// loop refills the pool one sandbox at a time, so that refilling never
// competes with cold jobs for more than one creation's worth of the host,
// and drains it when it is idle or memory is short.
func (wp *warmPool) loop(ctx context.Context) {
	defer close(wp.done)
	log := wp.r.log.With("pool", wp.p.Name)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	backoff := time.Duration(0)
	for {
		if reason := wp.shouldDrain(); reason != "" {
			if n := wp.drain(ctx); n > 0 {
				log.Info("pool drained", "reason", reason, "sandboxes", n)
			}
		} else if wp.wants() {
			b, err := wp.r.newBox(ctx, wp.image, wp.p, "")
			if err == nil {
				backoff = 0
				wp.put(b)
				continue
			}
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, time.Second), poolRetry)
			log.Warn("pool refill failed", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wp.kick:
		case <-tick.C:
		}
	}
}

// shouldDrain says why the pool should give its sandboxes back, if it
// should.
func (wp *warmPool) shouldDrain() string {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	if avail, err := memAvailable(); err == nil && avail < wp.cfg.MinAvailable {
		return fmt.Sprintf("memory pressure: %d bytes available, under %d", avail, wp.cfg.MinAvailable)
	}
	if wp.cfg.MaxIdle > 0 && time.Since(wp.lastClaim) > wp.cfg.MaxIdle {
		wp.idle = true
		return fmt.Sprintf("no claim for %s", wp.cfg.MaxIdle)
	}
	return ""
}

// wants says whether the pool is short of sandboxes and may refill.
func (wp *warmPool) wants() bool {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	return !wp.idle && len(wp.ready) < wp.cfg.Size && (wp.running == 0 || len(wp.ready) == 0)
}

func (wp *warmPool) put(b *box) {
	wp.mu.Lock()
	wp.ready = append(wp.ready, b)
	n := len(wp.ready)
	wp.mu.Unlock()
	wp.r.poolMetrics.ready.WithLabelValues(wp.p.Name).Set(float64(n))
}

// drain tears down every ready sandbox and returns how many there were.
func (wp *warmPool) drain(ctx context.Context) int {
	wp.mu.Lock()
	ready := wp.ready
	wp.ready = nil
	wp.mu.Unlock()
	wp.r.poolMetrics.ready.WithLabelValues(wp.p.Name).Set(0)
	var errs []error
	for _, b := range ready {
		errs = append(errs, b.u.Run(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		wp.r.log.Error("pool drain: sandbox cleanup failed", "pool", wp.p.Name, "err", err)
	}
	return len(ready)
}

// closePools stops every refill and tears down every ready sandbox.
func (r *Runner) closePools() {
	r.poolsMu.Lock()
	pools := r.pools
	r.pools = nil
	r.poolsMu.Unlock()
	for _, wp := range pools {
		wp.stop()
		<-wp.done
		wp.drain(namespaces.WithNamespace(context.Background(), footprint.Namespace))
	}
}

// readMemAvailable returns the host's MemAvailable in bytes.
func readMemAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemAvailable:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("meminfo: unexpected MemAvailable line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meminfo: %w", err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("meminfo: no MemAvailable")
}

// PoolReady is how many warm sandboxes the profile's pool holds now; zero
// without a pool.
func (r *Runner) PoolReady(profile string) int {
	r.poolsMu.Lock()
	wp := r.pools[profile]
	r.poolsMu.Unlock()
	if wp == nil {
		return 0
	}
	wp.mu.Lock()
	defer wp.mu.Unlock()
	return len(wp.ready)
}
