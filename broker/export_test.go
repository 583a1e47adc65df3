package broker

// Waiters is how many idempotent retries of job id, of any owner, wait for its response,
// for tests that must know a retry is waiting before the job ends.
func Waiters(s *Server, id string) int {
	n := 0
	for _, j := range s.jobs.byID(id) {
		n += int(j.waiters.Load())
	}
	return n
}

// ToStatus is the one mapping of errors to statuses.
var ToStatus = toStatus

// UnaryErrors and StreamErrors are the error interceptors.
var (
	UnaryErrors  = unaryErrors
	StreamErrors = streamErrors
)
