package job

// Exit codes of a sandbox agent (docs/agent-contract.md). The agent
// chooses one and the broker reads it to pick a verdict, so both take it
// from here: a code then means to the broker what the agent meant by it.
// The job chooses its exit code, so a code only selects a verdict; the
// verdict's message is the broker's, from what the proxy and the gate
// counted.
const (
	// ExitOK means result.json was written.
	ExitOK = 0
	// ExitFailure means the job was valid but could not be done.
	ExitFailure = 1
	// ExitBadJob means the job itself is wrong: unknown task, bad params or a
	// malformed job.json. Retrying it cannot help.
	ExitBadJob = 2
	// ExitModel means the agent task's model failed: its service refused
	// or failed, or its reply was malformed or too large.
	ExitModel = 3
	// ExitLimit means the agent task reached maxTurns or maxToolCalls
	// before an answer.
	ExitLimit = 4
	// ExitAnswer means the model's answer did not fit the schema, also
	// after a repair turn.
	ExitAnswer = 5
	// ExitFetchRefused means the egress proxy refused a content URL or a
	// redirect of it.
	ExitFetchRefused = 6
	// ExitFetchTooLarge means a content URL's body was over MaxFetchBytes.
	ExitFetchTooLarge = 7
	// ExitFetchTimeout means a content URL's fetch ran past its time.
	ExitFetchTimeout = 8
	// ExitFetchFailed means a content URL answered an error status, a type
	// the agent does not read, or no answer at all.
	ExitFetchFailed = 9
	// ExitContract means job.json was written for a contract version the
	// agent does not speak: the broker and the agent image do not match,
	// and nothing of the job was read.
	ExitContract = 10
)

// MaxFetchBytes caps the body of any URL the reference agent fetches (a
// content URL, the fetch task's or tool's): it parses the page in memory.
// A larger content URL fails the job with ExitFetchTooLarge, and the
// broker's verdict names the cap.
const MaxFetchBytes = 4 << 20
