package broker

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// jobState is one job's record: running until done is closed, then resp is
// set and never changes.
type jobState struct {
	id string
	// owner is the name of the token that created the job.
	owner string
	// request is the digest of the request that created the job; a retry
	// under the same ID must match it.
	request [sha256.Size]byte
	done    chan struct{}
	// waiters counts the idempotent retries waiting for this job's
	// response.
	waiters atomic.Int32

	mu       sync.Mutex
	gate     *execGate // while the job runs, for Approve
	resp     *airlockv1.SpawnResponse
	cancel   context.CancelFunc
	finished time.Time
}

func (j *jobState) setCancel(c context.CancelFunc) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.cancel = c
}

// setGate records the running job's exec gate, or clears it once the job
// has run, after which Approve finds nothing waiting.
func (j *jobState) setGate(g *execGate) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.gate = g
}

func (j *jobState) execGate() *execGate {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.gate
}

// cancelJob cancels a running job and reports whether it was running.
func (j *jobState) cancelJob() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	select {
	case <-j.done:
		return false
	default:
	}
	if j.cancel != nil {
		j.cancel()
	}
	return true
}

// finish records the job's response and ends its waits, once, and
// reports whether this call did: a job that panicked after it finished
// is not finished again.
func (j *jobState) finish(resp *airlockv1.SpawnResponse) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	select {
	case <-j.done:
		return false
	default:
	}
	j.resp = resp
	j.finished = time.Now()
	// The cancel func holds the request's context, and with it the
	// caller's stream, for as long as the record is kept.
	j.cancel = nil
	close(j.done)
	return true
}

func (j *jobState) response() (*airlockv1.SpawnResponse, bool) {
	select {
	case <-j.done:
	default:
		return nil, false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.resp, j.resp != nil
}

// wait returns the job's response once it has one.
func (j *jobState) wait(ctx context.Context) (*airlockv1.SpawnResponse, error) {
	j.waiters.Add(1)
	defer j.waiters.Add(-1)
	select {
	case <-j.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if resp, ok := j.response(); ok {
		return resp, nil
	}
	// The first attempt was refused before it ran; the caller may retry.
	return nil, ErrOverloaded
}

// DefaultRetainJobs is Config.RetainJobs when zero.
const DefaultRetainJobs = 10000

// jobStore holds jobs by ID for idempotency, Cancel and GetJob. Finished
// jobs are kept for the retention period, and at most maxFinished of them,
// the oldest dropped first, so the store's memory is bounded whatever the
// job rate.
type jobStore struct {
	retention   time.Duration
	maxFinished int

	mu   sync.Mutex
	jobs map[jobKey]*jobState
	// order is the keys of the jobs in the order they started, for the
	// cap; a key whose job is gone is skipped.
	order []jobKey
}

// jobKey names a job: job IDs are the caller's, so each owner has its own.
// One caller can then neither claim an ID another will use nor learn,
// from a refusal, that another holds it.
type jobKey struct{ owner, id string }

func newJobStore(retention time.Duration, maxFinished int) *jobStore {
	return &jobStore{retention: retention, maxFinished: maxFinished, jobs: map[jobKey]*jobState{}}
}

// start returns owner's job with id, and whether this call created it.
func (s *jobStore) start(owner, id string, request [sha256.Size]byte) (*jobState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(time.Now())
	k := jobKey{owner, id}
	if j, ok := s.jobs[k]; ok {
		return j, false
	}
	j := &jobState{id: id, owner: owner, request: request, done: make(chan struct{})}
	s.jobs[k] = j
	s.order = append(s.order, k)
	return j, true
}

func (s *jobStore) get(owner, id string) (*jobState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobKey{owner, id}]
	return j, ok
}

// byID returns every owner's job with id, for admins.
func (s *jobStore) byID(id string) []*jobState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*jobState
	for k, j := range s.jobs {
		if k.id == id {
			out = append(out, j)
		}
	}
	return out
}

func (s *jobStore) forget(j *jobState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := jobKey{j.owner, j.id}
	if s.jobs[k] == j {
		delete(s.jobs, k)
	}
}

// expireLocked drops finished jobs past the retention, then the oldest
// finished ones past the cap. Running jobs are never dropped.
func (s *jobStore) expireLocked(now time.Time) {
	finished := 0
	for k, j := range s.jobs {
		j.mu.Lock()
		done := !j.finished.IsZero()
		old := done && now.Sub(j.finished) > s.retention
		j.mu.Unlock()
		switch {
		case old:
			delete(s.jobs, k)
		case done:
			finished++
		}
	}
	kept := s.order[:0]
	for _, k := range s.order {
		j, ok := s.jobs[k]
		if !ok {
			continue
		}
		if finished > s.maxFinished {
			j.mu.Lock()
			done := !j.finished.IsZero()
			j.mu.Unlock()
			if done {
				delete(s.jobs, k)
				finished--
				continue
			}
		}
		kept = append(kept, k)
	}
	// Zeroed so the dropped keys' strings can be collected.
	clear(s.order[len(kept):])
	s.order = kept
}

// cancelAll cancels every running job.
func (s *jobStore) cancelAll() {
	s.mu.Lock()
	jobs := make([]*jobState, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	for _, j := range jobs {
		j.cancelJob()
	}
}
