package broker_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/airlock/airlock/broker"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// TestFinishedJob_CarriesEveryFieldOfTheResponse: a Job holds everything a
// SpawnResponse holds, field by field, so that a field added to one and not
// the other, or not copied, fails here.
func TestFinishedJob_CarriesEveryFieldOfTheResponse(t *testing.T) {
	result, _ := structpb.NewStruct(map[string]any{"title": "T"})
	resp := &airlockv1.SpawnResponse{
		JobId: "j1", Verdict: airlockv1.Verdict_VERDICT_OK, Result: result, Message: "m",
		Sanitization: &airlockv1.SanitizationReport{Findings: []*airlockv1.SanitizationFinding{{Path: "$.title", Kind: "k"}}},
		Egress:       []*airlockv1.EgressAttempt{{Host: "h"}},
		Usage:        &airlockv1.Usage{ExitCode: 3},
		Policy:       &airlockv1.EffectivePolicy{Profile: "vanilla"},
		Exec:         []*airlockv1.ExecDecision{{Argv: []string{"id"}}},
		Node:         "10.0.3.7:7443",
	}
	j := broker.FinishedJob(resp)
	if j.GetState() != airlockv1.JobState_JOB_STATE_FINISHED {
		t.Errorf("state %v, want FINISHED", j.GetState())
	}
	rf, jf := resp.ProtoReflect(), j.ProtoReflect()
	fields := rf.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if !rf.Has(f) {
			t.Fatalf("test response leaves %s unset; set every field", f.Name())
		}
		g := jf.Descriptor().Fields().ByName(f.Name())
		if g == nil {
			t.Errorf("Job has no field %s", f.Name())
			continue
		}
		if !equalValue(f, rf.Get(f), jf.Get(g)) {
			t.Errorf("Job.%s = %v, want %v", f.Name(), jf.Get(g), rf.Get(f))
		}
	}
}

func equalValue(f protoreflect.FieldDescriptor, a, b protoreflect.Value) bool {
	switch {
	case f.IsList():
		if a.List().Len() != b.List().Len() {
			return false
		}
		for i := 0; i < a.List().Len(); i++ {
			if !proto.Equal(a.List().Get(i).Message().Interface(), b.List().Get(i).Message().Interface()) {
				return false
			}
		}
		return true
	case f.Message() != nil:
		return proto.Equal(a.Message().Interface(), b.Message().Interface())
	default:
		return a.Equal(b)
	}
}

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
	if want := broker.FinishedJob(resp); !proto.Equal(got.GetJob(), want) {
		t.Errorf("GetJob = %v, want %v", got.GetJob(), want)
	}
	if got.GetResponse() != nil || got.GetState() != airlockv1.JobState_JOB_STATE_UNSPECIFIED {
		t.Errorf("deprecated fields set: %v", got)
	}
}
