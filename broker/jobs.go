package broker

import (
	"context"
	"sync"
	"time"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// job is one job's record: running until done is closed, then resp is
// set and never changes.
type job struct {
	id string
	// owner is the name of the token that created the job.
	owner string
	done  chan struct{}

	mu       sync.Mutex
	resp     *airlockv1.SpawnResponse
	cancel   context.CancelFunc
	finished time.Time
}

func (j *job) setCancel(c context.CancelFunc) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.cancel = c
}

// cancelJob cancels a running job and reports whether it was running.
func (j *job) cancelJob() bool {
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

func (j *job) finish(resp *airlockv1.SpawnResponse) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.resp = resp
	j.finished = time.Now()
	close(j.done)
}

func (j *job) response() (*airlockv1.SpawnResponse, bool) {
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
func (j *job) wait(ctx context.Context) (*airlockv1.SpawnResponse, error) {
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

// jobStore holds jobs by ID for idempotency, Cancel and GetJob. Finished
// jobs are kept for the retention period, then dropped.
type jobStore struct {
	retention time.Duration

	mu   sync.Mutex
	jobs map[string]*job
}

func newJobStore(retention time.Duration) *jobStore {
	return &jobStore{retention: retention, jobs: map[string]*job{}}
}

// start returns the job with id, and whether this call created it.
func (s *jobStore) start(id, owner string) (*job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(time.Now())
	if j, ok := s.jobs[id]; ok {
		return j, false
	}
	j := &job{id: id, owner: owner, done: make(chan struct{})}
	s.jobs[id] = j
	return j, true
}

func (s *jobStore) get(id string) (*job, bool) {
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

func (s *jobStore) expireLocked(now time.Time) {
	for id, j := range s.jobs {
		j.mu.Lock()
		old := !j.finished.IsZero() && now.Sub(j.finished) > s.retention
		j.mu.Unlock()
		if old {
			delete(s.jobs, id)
		}
	}
}

// cancelAll cancels every running job.
func (s *jobStore) cancelAll() {
	s.mu.Lock()
	jobs := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	for _, j := range jobs {
		j.cancelJob()
	}
}
