package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/footprint"
)

// Baseline configures RunContainerd and RunRunc.
type Baseline struct {
	// N is how many containers to run, Concurrency how many at once.
	N, Concurrency int
	// Profile is the policy whose OCI spec (sandbox.SpecFor) every
	// container gets, so a baseline differs from Airlock only in what the
	// broker does around the container. Its network is always a fresh
	// namespace with loopback only: a baseline has no egress proxy.
	Profile *policy.Profile
	// Task, Params and Content are the job the agent runs, as in Options.
	Task    string
	Params  map[string]string
	Content []*airlockv1.Content
	// Interval paces the jobs, as in Options.
	Interval time.Duration
}

func (b Baseline) check() error {
	if b.Profile == nil {
		return errors.New("bench: a baseline needs the profile whose spec it runs")
	}
	return nil
}

// jobDir is a baseline's job directory: one read-only input directory
// shared by every run, which the agent only reads, and an output directory
// per run, owned by the sandbox user.
type jobDir struct {
	root     string
	input    string
	uid, gid uint32
	// run is an empty directory for the /run mount that a profile allowing
	// exec gets for its tool gateway. A baseline serves no gateway, but
	// mounts the directory so that its spec stays Airlock's.
	run string
}

// newJobDir writes job.json and the content under root/input the way the
// sandbox runner lays them out, so the agent does the same work as under
// the broker.
func newJobDir(root string, b Baseline) (*jobDir, error) {
	p := b.Profile
	d := &jobDir{root: root, input: filepath.Join(root, "input"),
		uid: sandbox.HostID(p, p.Isolation.UID), gid: sandbox.HostID(p, p.Isolation.GID)}
	contentDir := filepath.Join(d.input, "content")
	if err := os.MkdirAll(contentDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "runs"), 0o711); err != nil {
		return nil, err
	}
	if p.ToolGateway() {
		d.run = filepath.Join(root, "run")
		if err := footprint.MkdirTraversable(d.run); err != nil {
			return nil, err
		}
	}
	task := b.Task
	if task == "" {
		task = DefaultTask
	}
	content := b.Content
	if len(content) == 0 {
		content = DefaultJobContent()
	}
	job := agent.Job{ContractVersion: agent.ContractVersion, ID: "airlock-bench", Task: task, Params: b.Params, Tools: p.EffectiveTools(policy.KnownTools)}
	for i, c := range content {
		name := strconv.Itoa(i)
		if err := os.WriteFile(filepath.Join(contentDir, name), c.GetData(), 0o444); err != nil {
			return nil, err
		}
		job.Content = append(job.Content, agent.ContentFile{Name: name, MediaType: c.GetMediaType(), Source: c.GetSource()})
	}
	data, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(d.input, "job.json"), data, 0o444); err != nil {
		return nil, err
	}
	// Modes are set explicitly: the files must be readable by the sandbox
	// user whatever the caller's umask.
	for path, mode := range map[string]os.FileMode{filepath.Join(d.input, "job.json"): 0o444, contentDir: 0o555, d.input: 0o555} {
		if err := os.Chmod(path, mode); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// run is one baseline run's ID and output directory.
type run struct {
	id     string
	output string
}

// newRun makes a run's output directory. It is a plain directory, not the
// size-capped tmpfs the runner mounts: the baseline is the container's
// cost, and the mount is part of what Airlock adds.
func (d *jobDir) newRun(prefix string) (run, error) {
	r := run{id: prefix + uuid.NewString()}
	r.output = filepath.Join(d.root, "runs", r.id)
	if err := os.Mkdir(r.output, 0o700); err != nil {
		return r, err
	}
	if err := os.Chown(r.output, int(d.uid), int(d.gid)); err != nil {
		os.Remove(r.output)
		return r, err
	}
	return r, nil
}

// paths are the host paths a run's spec mounts.
func (d *jobDir) paths(r run) sandbox.JobPaths {
	return sandbox.JobPaths{Input: d.input, Output: r.output, Run: d.run}
}

// finish checks that the agent left a result and removes the run's output.
func (d *jobDir) finish(r run) error {
	_, err := os.Stat(filepath.Join(r.output, filepath.Base(agent.ResultFile)))
	if rmErr := os.RemoveAll(r.output); err == nil && rmErr != nil {
		return rmErr
	}
	if err != nil {
		return fmt.Errorf("run %s left no result: %w", r.id, err)
	}
	return nil
}

// cgroupParent is the cgroup every baseline container is created under.
const cgroupParent = "/airlock-bench"

// removeCgroupParent removes the baseline's parent cgroup from every
// hierarchy once its runs are gone. rmdir only ever removes an empty
// cgroup, so another bench still running keeps its own.
func removeCgroupParent() {
	const root = "/sys/fs/cgroup"
	_ = unix.Rmdir(filepath.Join(root, cgroupParent))
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = unix.Rmdir(filepath.Join(root, e.Name(), cgroupParent))
		}
	}
}

// mkWorkDir makes a private directory for a baseline under parent ("" for
// the system temp dir). It is searchable by others, because a
// user-namespaced sandbox reaches its rootfs and mounts below it as an
// unprivileged host uid.
func mkWorkDir(parent, pattern string) (string, error) {
	dir, err := os.MkdirTemp(parent, pattern)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	if err := footprint.CheckTraversable(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}
