package server

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestLockStateDir_RefusesASecondBroker(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockStateDir(dir); err == nil || !strings.Contains(err.Error(), "in use by another airlockd (pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v, want refused naming this pid", err)
	}
	unlock()
	unlock2, err := lockStateDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
