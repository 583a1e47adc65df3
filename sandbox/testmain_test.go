package sandbox

import (
	"encoding/json"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// shippedProfiles loads the profiles Airlock ships. The sandbox never
// compiles result schemas (the broker does), so a default schema only has
// to be JSON here.
func shippedProfiles(t *testing.T) *policy.Set {
	t.Helper()
	set, err := policy.Load(policies.FS, policy.WithSchemaCheck(func(s string) error {
		if !json.Valid([]byte(s)) {
			return errors.New("not JSON")
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return set
}
