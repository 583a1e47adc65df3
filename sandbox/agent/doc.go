// Package agent is Airlock's reference sub-agent: the program inside the
// `reader` image that reads a job's content and writes its result.
//
// The agent runs inside the sandbox and treats all content as data. Its tasks
// are deterministic and work from the visible text of a page only, so text a
// browser would not show (scripts, comments, hidden elements) cannot steer or
// leak into the result. Run holds the task logic and takes its input through a
// function, so it is testable without a sandbox; Main wires it to the fixed
// paths of the sandbox contract.
package agent
