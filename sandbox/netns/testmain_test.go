package netns

import (
	"testing"

	"go.uber.org/goleak"
)

// Netlink handles, nftables connections and the namespace threads all end
// with their calls, so no goroutine may outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
