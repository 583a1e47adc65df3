package airlockv1_test

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// TestFinishedJob_CarriesEveryFieldOfTheResponse: GetJob and a stream's
// Done event are a finished job's response as a Job. The response is
// filled by reflection, so a field added to SpawnResponse later is set
// here too, and fails unless Job has it by the same name and type.
func TestFinishedJob_CarriesEveryFieldOfTheResponse(t *testing.T) {
	resp := &airlockv1.SpawnResponse{}
	fill(t, resp.ProtoReflect(), 2)
	j := airlockv1.FinishedJob(resp)
	requireCarried(t, resp, j)
	if j.GetState() != airlockv1.JobState_JOB_STATE_FINISHED {
		t.Errorf("state %v, want FINISHED", j.GetState())
	}
}

// TestResponseOf_CarriesEveryFieldOfTheJob: a client that reads a job's
// response off a stream's Done event (the MCP server) gets all of it. The
// event is filled by reflection, so a field added to Job later is set here
// too, and fails unless SpawnResponse has it. Only the state is left, as
// every response is of a finished job.
func TestResponseOf_CarriesEveryFieldOfTheJob(t *testing.T) {
	done := &airlockv1.Job{}
	fill(t, done.ProtoReflect(), 2)
	requireCarried(t, done, airlockv1.ResponseOf(done), "state")
}

// requireCarried fails t unless dst holds every field of src but except,
// by the same name and equal.
func requireCarried(t *testing.T, src, dst proto.Message, except ...protoreflect.Name) {
	t.Helper()
	s, d := src.ProtoReflect(), dst.ProtoReflect()
	fields := s.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if slices.Contains(except, f.Name()) {
			continue
		}
		g := d.Descriptor().Fields().ByName(f.Name())
		switch {
		case g == nil:
			t.Errorf("%s has no field %s: it would be dropped", d.Descriptor().Name(), f.Name())
		case !d.Has(g) || !s.Get(f).Equal(d.Get(g)):
			t.Errorf("%s.%s (%v) = %v, want %v (%v)", d.Descriptor().Name(), g.Name(), g.Kind(), d.Get(g), s.Get(f), f.Kind())
		}
	}
}

// fill sets every field of m, and of the messages in it down to depth
// more levels, to a value other than its zero: one element in a list or a
// map, the last value of an enum, the field's name or number otherwise.
func fill(t *testing.T, m protoreflect.Message, depth int) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		switch {
		case f.IsMap():
			mp := m.Mutable(f).Map()
			mp.Set(sample(t, f.MapKey(), nil, 0).MapKey(), sample(t, f.MapValue(), func() protoreflect.Message { return mp.NewValue().Message() }, depth))
		case f.IsList():
			l := m.Mutable(f).List()
			l.Append(sample(t, f, func() protoreflect.Message { return l.NewElement().Message() }, depth))
		default:
			m.Set(f, sample(t, f, func() protoreflect.Message { return m.NewField(f).Message() }, depth))
		}
		if !m.Has(f) && f.ContainingOneof() == nil {
			t.Fatalf("fill left %s unset; teach it the field's type", f.FullName())
		}
	}
}

// sample is a value of f's type other than its zero; a message comes from
// newMessage, filled to depth.
func sample(t *testing.T, f protoreflect.FieldDescriptor, newMessage func() protoreflect.Message, depth int) protoreflect.Value {
	switch f.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		m := newMessage()
		if depth > 0 {
			fill(t, m, depth-1)
		}
		return protoreflect.ValueOfMessage(m)
	case protoreflect.EnumKind:
		values := f.Enum().Values()
		return protoreflect.ValueOfEnum(values.Get(values.Len() - 1).Number())
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(string(f.FullName()))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(f.FullName()))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(f.Number()) + 0.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(f.Number()) + 0.5)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(f.Number()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(f.Number()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(f.Number()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(f.Number()))
	}
	t.Fatalf("sample: no value for %s of kind %v", f.FullName(), f.Kind())
	return protoreflect.Value{}
}
