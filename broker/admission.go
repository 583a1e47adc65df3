package broker

import (
	"context"
	"fmt"
)

// admit takes a sandbox slot for owner, waiting in the bounded queue if
// all are busy. The returned func gives everything back.
func (s *Server) admit(ctx context.Context, owner string) (func(), error) {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		s.metrics.RejectedSpawns.WithLabelValues("draining").Inc()
		return nil, fmt.Errorf("%w: the broker is shutting down; retry against its successor", ErrUnavailable)
	}
	if s.maxPerOwner > 0 && s.perOwner[owner] >= s.maxPerOwner {
		s.mu.Unlock()
		s.metrics.RejectedSpawns.WithLabelValues("owner_quota").Inc()
		return nil, fmt.Errorf("%w: %q already runs %d jobs, its quota", ErrOverloaded, owner, s.maxPerOwner)
	}
	s.running++
	s.perOwner[owner]++
	s.ready.admitted(s.running)
	s.mu.Unlock()
	undo := func() {
		s.mu.Lock()
		s.running--
		close(s.runningChanged)
		s.runningChanged = make(chan struct{})
		s.ready.admitted(s.running)
		if s.perOwner[owner]--; s.perOwner[owner] <= 0 {
			delete(s.perOwner, owner)
		}
		s.mu.Unlock()
	}
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots; undo() }, nil
	default:
	}
	if s.queued.Add(1) > s.maxQueue {
		s.queued.Add(-1)
		undo()
		s.metrics.RejectedSpawns.WithLabelValues("overloaded").Inc()
		return nil, fmt.Errorf("%w: %d jobs running and %d waiting", ErrOverloaded, cap(s.slots), s.maxQueue)
	}
	defer s.queued.Add(-1)
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		undo()
		return nil, ctx.Err()
	case <-s.drainStarted:
		undo()
		s.metrics.RejectedSpawns.WithLabelValues("draining").Inc()
		return nil, errDrainedInQueue()
	}
	// A slot can free up in the same instant as the drain begins; a job
	// that waited never starts once it has.
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		<-s.slots
		undo()
		s.metrics.RejectedSpawns.WithLabelValues("draining").Inc()
		return nil, errDrainedInQueue()
	}
	return func() { <-s.slots; undo() }, nil
}

// errDrainedInQueue is the refusal of a job that waited for a slot when
// the drain began: nothing ran, so a retry elsewhere is safe.
func errDrainedInQueue() error {
	return fmt.Errorf("%w: the broker began shutting down while the job waited for a sandbox; nothing ran: retry against its successor", ErrUnavailable)
}
