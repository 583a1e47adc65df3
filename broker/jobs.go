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
	resp     *airlockv1.SpawnResponse
	cancel   context.CancelFunc
	finished time.Time
}

func (j *jobState) setCancel(c context.CancelFunc) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.cancel = c
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

func (j *jobState) finish(resp *airlockv1.SpawnResponse) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.resp = resp
	j.finished = time.Now()
	// The cancel func holds the request's context, and with it the
	// caller's stream, for as long as the record is kept.
	j.cancel = nil
	close(j.done)
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
	jobs map[string]*jobState
	// order is the IDs of the jobs in the order they started, for the
	// cap; an ID whose job is gone is skipped.
	order []string
}

func newJobStore(retention time.Duration, maxFinished int) *jobStore {
	return &jobStore{retention: retention, maxFinished: maxFinished, jobs: map[string]*jobState{}}
}

// start returns the job with id, and whether this call created it.
func (s *jobStore) start(id, owner string, request [sha256.Size]byte) (*jobState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(time.Now())
	if j, ok := s.jobs[id]; ok {
		return j, false
	}
	j := &jobState{id: id, owner: owner, request: request, done: make(chan struct{})}
	s.jobs[id] = j
	s.order = append(s.order, id)
	return j, true
}

func (s *jobStore) get(id string) (*jobState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	return j, ok
}

func (s *jobStore) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.jobs, id)
}

// expireLocked drops finished jobs past the retention, then the oldest
// finished ones past the cap. Running jobs are never dropped.
func (s *jobStore) expireLocked(now time.Time) {
	finished := 0
	for id, j := range s.jobs {
		j.mu.Lock()
		done := !j.finished.IsZero()
		old := done && now.Sub(j.finished) > s.retention
		j.mu.Unlock()
		switch {
		case old:
			delete(s.jobs, id)
		case done:
			finished++
		}
	}
	kept := s.order[:0]
	for _, id := range s.order {
		j, ok := s.jobs[id]
		if !ok {
			continue
		}
		if finished > s.maxFinished {
			j.mu.Lock()
			done := !j.finished.IsZero()
			j.mu.Unlock()
			if done {
				delete(s.jobs, id)
				finished--
				continue
			}
		}
		kept = append(kept, id)
	}
	// Zeroed so the dropped IDs' strings can be collected.
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
