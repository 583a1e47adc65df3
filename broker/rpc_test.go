package broker_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

func TestGetJob_AFinishedJobIsItsResponse(t *testing.T) {
	c, _ := newBroker(t, &fakeRunner{outcome: rawResult(`{"title":"T"}`)}, testToken, 0)
	req := request()
	req.JobId = "kept"
	resp, err := c.Spawn(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	if want := airlockv1.FinishedJob(resp); !proto.Equal(got.GetJob(), want) {
		t.Errorf("GetJob = %v, want %v", got.GetJob(), want)
	}
	if got.GetResponse() != nil || got.GetState() != airlockv1.JobState_JOB_STATE_UNSPECIFIED {
		t.Errorf("deprecated fields set: %v", got)
	}
}
