package broker_test

import (
	"strings"
	"testing"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestSpawn_ReusedJobIDWithAnotherRequestIsAlreadyExists: a retry under
// the same job_id gets the first response only for the same request; any
// change is AlreadyExists naming the field, and runs nothing.
func TestSpawn_ReusedJobIDWithAnotherRequestIsAlreadyExists(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
	c, _ := newBroker(t, runner, testToken, 0)
	req := request()
	req.JobId = "once"
	first, err := c.Spawn(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Spawn(ctx(t), proto.CloneOf(req))
	if err != nil || !proto.Equal(again, first) {
		t.Fatalf("same request again: %v, %v; want the first response", again, err)
	}
	changes := map[string]func(*airlockv1.SpawnRequest){
		"content":  func(r *airlockv1.SpawnRequest) { r.Content[0].Data = append(r.Content[0].Data, '!') },
		"profile":  func(r *airlockv1.SpawnRequest) { r.Profile = "ironclaw" },
		"task":     func(r *airlockv1.SpawnRequest) { r.Task.Params = map[string]string{"sentences": "7"} },
		"labels":   func(r *airlockv1.SpawnRequest) { r.Labels = map[string]string{"k": "v"} },
		"overides": func(r *airlockv1.SpawnRequest) { r.Overrides = &airlockv1.Overrides{OutputBytes: 1024} },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			r := proto.CloneOf(req)
			change(r)
			_, err := c.Spawn(ctx(t), r)
			if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "job_id") {
				t.Errorf("changed %s: %v, want AlreadyExists naming job_id", name, err)
			}
		})
	}
	if n := runner.runs.Load(); n != 1 {
		t.Errorf("runs = %d, want 1", n)
	}
}
