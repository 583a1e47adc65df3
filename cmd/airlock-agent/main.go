// Command airlock-agent is the reference sub-agent inside Airlock's reader
// image. It takes no flags: the sandbox contract fixes its input and output
// paths, and package agent documents them.
package main

import (
	"os"

	"github.com/airlock/airlock/cmd/airlock-agent/internal/answer"
	"github.com/airlock/airlock/sandbox/agent"
)

func main() {
	agent.CompileSchema = answer.Compile
	os.Exit(agent.Main())
}
