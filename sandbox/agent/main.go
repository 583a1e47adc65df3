package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/airlock/airlock/sandbox/job"
)

// ExitCode is the exit code Main returns for err, one of job's Exit codes
// by err's class: what the sandbox runner reports and the broker picks a
// verdict by. nil is job.ExitOK.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return job.ExitOK
	case errors.Is(err, ErrContract):
		return job.ExitContract
	case errors.Is(err, ErrBadJob) || errors.Is(err, ErrUnknownTask) || errors.Is(err, ErrBadParam):
		return job.ExitBadJob
	case errors.Is(err, ErrModel):
		return job.ExitModel
	case errors.Is(err, ErrLimit):
		return job.ExitLimit
	case errors.Is(err, ErrAnswerInvalid):
		return job.ExitAnswer
	case errors.Is(err, ErrFetch):
		return fetchExit(err)
	}
	return job.ExitFailure
}

// fetchExit is the exit code of a content URL's failed fetch.
func fetchExit(err error) int {
	switch {
	case errors.Is(err, ErrEgressRefused):
		return job.ExitFetchRefused
	case errors.Is(err, ErrTooLarge):
		return job.ExitFetchTooLarge
	case errors.Is(err, ErrFetchTimeout):
		return job.ExitFetchTimeout
	}
	return job.ExitFetchFailed
}

// A warm pool's sandbox starts its agent before the job is known, so that
// the job skips the runtime's start and the agent's own; the agent then
// waits, confined and with nothing of /input read, for the broker to say
// that its input is complete.
const (
	// StartEnv set to StartStdin makes Main wait for StartLine on stdin
	// before it reads its input.
	StartEnv   = "AIRLOCK_START"
	StartStdin = "stdin"
	// StartLine is all the broker ever writes to the agent's stdin.
	StartLine = "start\n"
)

// waitStart reads the start line from r. Anything else, or the end of r,
// means the sandbox is being torn down without a job: nothing is run.
func waitStart(r io.Reader) error {
	buf := make([]byte, len(StartLine))
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("waiting for the start line: %w", err)
	}
	if string(buf) != StartLine {
		return errors.New("waiting for the start line: stdin holds something else")
	}
	return nil
}

// MaxJobBytes caps job.json; a real job is a few hundred bytes.
const MaxJobBytes = 1 << 20

// MaxContentBytes caps each content file: the agent never reads further.
const MaxContentBytes = job.MaxContentItemBytes

// ErrBadJob is returned, wrapped, for a job.json that cannot be decoded.
var ErrBadJob = errors.New("bad job")

// ErrContract is returned, wrapped, for a job.json of another contract
// version than ContractVersion.
var ErrContract = errors.New("unknown contract version")

// ErrTooLarge is returned, wrapped, when an input exceeds its byte cap.
var ErrTooLarge = errors.New("input too large")

// sandboxPaths are where Main finds its input and puts its result.
type sandboxPaths struct {
	job, contentDir, result string
}

// Main restricts the agent with Landlock, runs the job described by the
// sandbox's job.json, writes result.json and returns the process exit code.
func Main() int {
	// A sandbox that does not enforce its profile runs nothing of the job.
	if err := checkConfined("/proc/self/status"); err != nil {
		fmt.Fprintf(os.Stderr, "airlock-agent: %v\n", err)
		return job.ExitFailure
	}
	// Then, before any content is read: whatever the content makes of
	// the agent later, it cannot execute a file or write outside these.
	if _, err := Restrict([]string{OutputDir, ScratchDir}); err != nil {
		fmt.Fprintf(os.Stderr, "airlock-agent: warning: running without a Landlock restriction: %v\n", err)
	}
	if os.Getenv(StartEnv) == StartStdin {
		if err := waitStart(os.Stdin); err != nil {
			fmt.Fprintf(os.Stderr, "airlock-agent: %v\n", err)
			return job.ExitFailure
		}
	}
	return runJob(sandboxPaths{job: JobFile, contentDir: ContentDir, result: ResultFile}, os.Stderr)
}

// runJob reports failures on stderr, which the runner sends to the audit log
// only; messages name files and tasks but never quote content.
func runJob(p sandboxPaths, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "airlock-agent: %v\n", err)
		return ExitCode(err)
	}
	j, err := readJob(p.job)
	if err != nil {
		return fail(err)
	}
	read, err := fetchContent(&j, contentReader(p.contentDir))
	if err != nil {
		return fail(err)
	}
	result, err := Run(j, read)
	if err != nil {
		return fail(fmt.Errorf("job %s: %w", j.ID, err))
	}
	if err := writeResult(p.result, result); err != nil {
		return fail(fmt.Errorf("job %s: %w", j.ID, err))
	}
	return job.ExitOK
}

// readJob decodes job.json strictly: a field this agent does not know may be
// a restriction it would fail to honour, so such a job is refused.
func readJob(name string) (Job, error) {
	f, err := os.Open(name)
	if err != nil {
		return Job{}, fmt.Errorf("%w: %v", ErrBadJob, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxJobBytes+1))
	if err != nil {
		return Job{}, fmt.Errorf("%w: read %s: %v", ErrBadJob, name, err)
	}
	if len(data) > MaxJobBytes {
		return Job{}, fmt.Errorf("%w: %s: %w: over %d bytes", ErrBadJob, name, ErrTooLarge, MaxJobBytes)
	}
	// The version first, leniently: a job.json of a later contract may
	// well hold fields this agent does not know, and the version is what
	// says why.
	var v struct {
		ContractVersion int `json:"contractVersion"`
	}
	if json.Unmarshal(data, &v) == nil && v.ContractVersion != ContractVersion {
		return Job{}, fmt.Errorf("%w: %s: %w %d, this agent speaks %d", ErrBadJob, name, ErrContract, v.ContractVersion, ContractVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var job Job
	if err := dec.Decode(&job); err != nil {
		return Job{}, fmt.Errorf("%w: %s: %v", ErrBadJob, name, err)
	}
	if dec.More() {
		return Job{}, fmt.Errorf("%w: %s: trailing data after the job object", ErrBadJob, name)
	}
	// A missing version (0) is refused too: the job.json then comes from
	// a runner older than the contract, or from no runner at all.
	if job.ContractVersion != ContractVersion {
		return Job{}, fmt.Errorf("%w: %s: %w %d, this agent speaks %d", ErrBadJob, name, ErrContract, job.ContractVersion, ContractVersion)
	}
	return job, nil
}

// contentReader reads content files from dir. It refuses symlinks and
// non-regular files so a content name can only ever mean a file in dir;
// O_NONBLOCK keeps a FIFO from hanging the open before that check.
func contentReader(dir string) func(name string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		p := filepath.Join(dir, name)
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", p)
		}
		data, err := io.ReadAll(io.LimitReader(f, MaxContentBytes+1))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		if len(data) > MaxContentBytes {
			return nil, fmt.Errorf("%s: %w: over %d bytes", p, ErrTooLarge, MaxContentBytes)
		}
		return data, nil
	}
}

// writeResult creates result.json exclusively and without following links,
// so nothing planted in the output directory can redirect the write.
func writeResult(name string, result any) error {
	data, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		// A truncated result would only fail schema validation later, with a
		// less useful message than this one.
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
