package broker

// Waiters is how many idempotent retries of job id wait for its response,
// for tests that must know a retry is waiting before the job ends.
func Waiters(s *Server, id string) int {
	j, ok := s.jobs.get(id)
	if !ok {
		return 0
	}
	return int(j.waiters.Load())
}

// ToStatus is the one mapping of errors to statuses.
var ToStatus = toStatus

// FinishedJob is the Job of a finished job's response.
var FinishedJob = finishedJob

// UnaryErrors and StreamErrors are the error interceptors.
var (
	UnaryErrors  = unaryErrors
	StreamErrors = streamErrors
)
