package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

func TestJobStore_KeepsAtMostMaxFinishedNewestFirst(t *testing.T) {
	s := newJobStore(time.Hour, 3)
	running, _ := s.start("o", "running", [32]byte{})
	for i := range 10 {
		j, created := s.start("o", fmt.Sprintf("job-%d", i), [32]byte{})
		if !created {
			t.Fatalf("job-%d not created", i)
		}
		_, cancel := context.WithCancel(context.Background())
		j.setCancel(cancel)
		j.finish(&airlockv1.SpawnResponse{JobId: j.id})
		if j.cancel != nil {
			t.Errorf("job-%d keeps its request's cancel func after finishing", i)
		}
	}
	s.start("o", "trigger", [32]byte{}) // expiry runs on start
	for i := range 10 {
		_, ok := s.get("o", fmt.Sprintf("job-%d", i))
		if want := i >= 7; ok != want {
			t.Errorf("job-%d kept = %v, want %v", i, ok, want)
		}
	}
	if _, ok := s.get("o", "running"); !ok {
		t.Error("a running job was dropped to make room")
	}
	if len(s.jobs) != 5 || len(s.order) != 5 {
		t.Errorf("store holds %d jobs, order %d; want 3 finished and 2 running", len(s.jobs), len(s.order))
	}
	running.finish(nil)
}

func TestJobStore_DropsFinishedPastRetention(t *testing.T) {
	s := newJobStore(time.Minute, 100)
	j, _ := s.start("o", "old", [32]byte{})
	j.finish(&airlockv1.SpawnResponse{})
	j.finished = time.Now().Add(-2 * time.Minute)
	s.start("o", "new", [32]byte{})
	if _, ok := s.get("o", "old"); ok {
		t.Error("a job finished past the retention is still kept")
	}
}
