package sandbox

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestOwnProcsFile_IsTheProcessesOwnCgroup(t *testing.T) {
	tests := []struct {
		name   string
		cgroup string
		files  []string
		want   string
	}{
		{"hybrid, first hierarchy mounted", "10:hugetlb:/\n8:pids:/a/b\n0::/a\n", []string{"pids/a/b/cgroup.procs", "hugetlb/cgroup.procs"}, "hugetlb/cgroup.procs"},
		{"hybrid, later hierarchy", "10:hugetlb:/\n8:pids:/a/b\n0::/a\n", []string{"pids/a/b/cgroup.procs"}, "pids/a/b/cgroup.procs"},
		{"named hierarchy", "9:name=systemd:/s.slice/x.service\n", []string{"systemd/s.slice/x.service/cgroup.procs"}, "systemd/s.slice/x.service/cgroup.procs"},
		{"joined controllers", "4:cpu,cpuacct:/k\n", []string{"cpu,cpuacct/k/cgroup.procs"}, "cpu,cpuacct/k/cgroup.procs"},
		{"v2", "0::/init\n", []string{"init/cgroup.procs"}, "init/cgroup.procs"},
		{"v2 beside v1", "0::/init\n", []string{"unified/init/cgroup.procs"}, "unified/init/cgroup.procs"},
		{"another cgroup's file only", "8:pids:/a\n", []string{"pids/b/cgroup.procs", "pids/cgroup.procs"}, ""},
		{"a path that climbs", "8:pids:/../../etc\n", []string{"pids/../../etc/cgroup.procs"}, ""},
		{"nothing mounted", "8:pids:/a\n", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			proc, root := filepath.Join(dir, "proc"), filepath.Join(dir, "cg")
			if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(proc, "self", "cgroup"), []byte(tt.cgroup), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, f := range tt.files {
				p := filepath.Join(root, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := ""
			if tt.want != "" {
				want = filepath.Join(root, tt.want)
			}
			if got := ownProcsFile(proc, root); got != want {
				t.Errorf("ownProcsFile = %q, want %q", got, want)
			}
		})
	}
}

func TestWarmCgroupLock_WritesOnlyItsOwnPid(t *testing.T) {
	dir := t.TempDir()
	proc, root := filepath.Join(dir, "proc"), filepath.Join(dir, "cg")
	for _, p := range []string{filepath.Join(proc, "self"), filepath.Join(root, "pids", "a")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(proc, "self", "cgroup"), []byte("8:pids:/a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	procs := filepath.Join(root, "pids", "a", "cgroup.procs")
	if err := os.WriteFile(procs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	close(done)
	warmCgroupLock(proc, root, done)
	b, err := os.ReadFile(procs)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("wrote %q, want this process's pid once", b)
	}
}
