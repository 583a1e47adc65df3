package airlockv1

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// FinishedJob is the Job of a finished job's response: every field of
// resp, and state FINISHED. It may share resp's messages, which are never
// changed once the job finished.
func FinishedJob(resp *SpawnResponse) *Job {
	j := &Job{}
	copyFields(j, resp)
	j.State = JobState_JOB_STATE_FINISHED
	return j
}

// ResponseOf is the SpawnResponse of a finished Job, such as a stream's
// Done event: every field of j but its state. It may share j's messages.
func ResponseOf(j *Job) *SpawnResponse {
	resp := &SpawnResponse{}
	copyFields(resp, j)
	return resp
}

// copyFields sets each field of dst that is set in src, matched by name
// and type. A field copied by hand is dropped the day one is added to both
// messages and not to the copy; by name, it cannot be. The tests fail when
// a field of one message has no match in the other.
func copyFields(dst, src proto.Message) {
	d := dst.ProtoReflect()
	fields := d.Descriptor().Fields()
	src.ProtoReflect().Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if g := fields.ByName(f.Name()); g != nil && sameType(f, g) {
			d.Set(g, v)
		}
		return true
	})
}

// sameType reports whether a value of field a can be set in field b.
func sameType(a, b protoreflect.FieldDescriptor) bool {
	switch {
	case a.Kind() != b.Kind() || a.Cardinality() != b.Cardinality() || a.IsMap() != b.IsMap():
		return false
	case a.IsMap():
		// Each message has its own entry type; its key and value decide.
		return sameType(a.MapKey(), b.MapKey()) && sameType(a.MapValue(), b.MapValue())
	case a.Message() != nil:
		return a.Message().FullName() == b.Message().FullName()
	case a.Enum() != nil:
		return a.Enum().FullName() == b.Enum().FullName()
	}
	return true
}
