package result

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
)

// ToStruct converts v, as returned by Parse, into the protobuf form the
// broker returns. The top level must be an object. structpb holds every
// number as a double, so json.Number becomes float64: integers beyond 2^53
// lose precision (a schema that needs them exact should use strings), and a
// number too large for a double is refused rather than turned into infinity.
func ToStruct(v any) (*structpb.Struct, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: result must be a JSON object, got %s", ErrSchemaInvalid, typeName(v))
	}
	var path []step
	return toStruct(obj, &path)
}

func toStruct(obj map[string]any, path *[]step) (*structpb.Struct, error) {
	fields := make(map[string]*structpb.Value, len(obj))
	for k, v := range obj {
		*path = append(*path, step{key: k})
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: invalid UTF-8 in key at %s", ErrNotJSON, formatPath(*path))
		}
		pv, err := toValue(v, path)
		if err != nil {
			return nil, err
		}
		*path = (*path)[:len(*path)-1]
		fields[k] = pv
	}
	return &structpb.Struct{Fields: fields}, nil
}

func toValue(v any, path *[]step) (*structpb.Value, error) {
	// Parse already bounds depth; this guards callers that build v by hand.
	if len(*path) > MaxDepth {
		return nil, fmt.Errorf("%w: more than %d levels at %s", ErrTooDeep, MaxDepth, formatPath(*path))
	}
	switch v := v.(type) {
	case nil:
		return structpb.NewNullValue(), nil
	case bool:
		return structpb.NewBoolValue(v), nil
	case string:
		// protobuf refuses to marshal invalid UTF-8, so catch it here, with a path.
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: invalid UTF-8 in string at %s", ErrNotJSON, formatPath(*path))
		}
		return structpb.NewStringValue(v), nil
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("%w: number at %s does not fit in a double", ErrSchemaInvalid, formatPath(*path))
		}
		return structpb.NewNumberValue(f), nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("%w: number at %s is not finite", ErrSchemaInvalid, formatPath(*path))
		}
		return structpb.NewNumberValue(v), nil
	case map[string]any:
		s, err := toStruct(v, path)
		if err != nil {
			return nil, err
		}
		return structpb.NewStructValue(s), nil
	case []any:
		vals := make([]*structpb.Value, len(v))
		for i, e := range v {
			*path = append(*path, step{index: i, isIndex: true})
			pv, err := toValue(e, path)
			if err != nil {
				return nil, err
			}
			*path = (*path)[:len(*path)-1]
			vals[i] = pv
		}
		return structpb.NewListValue(&structpb.ListValue{Values: vals}), nil
	}
	return nil, fmt.Errorf("result: unsupported Go type %T at %s", v, formatPath(*path))
}

// typeName names v's JSON type for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
