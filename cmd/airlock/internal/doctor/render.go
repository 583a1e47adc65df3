package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Status is the word a report shows for c: "ok", or the severity of a
// check that did not pass in capitals, so failures stand out.
func Status(c Check) string {
	if c.OK {
		return "ok"
	}
	return strings.ToUpper(string(c.Severity))
}

// WriteText writes one line per check, `FAIL  token.strength  detail
// fix: hint`, ids aligned, then a one-line summary.
func WriteText(w io.Writer, checks []Check) error {
	width := 0
	for _, c := range checks {
		width = max(width, len(c.ID))
	}
	warned := 0
	for _, c := range checks {
		line := fmt.Sprintf("%-4s  %-*s  %s", Status(c), width, c.ID, c.Detail)
		if !c.OK && c.Fix != "" {
			line += "  fix: " + c.Fix
		}
		if !c.OK && c.Severity == Warn {
			warned++
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "%d checks: %d failed, %d warnings\n", len(checks), Summary(checks), warned)
	return err
}

// Report is the JSON form of a run.
type Report struct {
	// OK is true when no check failed with severity fail.
	OK bool `json:"ok"`
	// Failed counts the checks that failed with severity fail.
	Failed int `json:"failed"`
	// Checks are all the checks, in IDs order.
	Checks []Check `json:"checks"`
}

// WriteJSON writes the checks as one indented Report.
func WriteJSON(w io.Writer, checks []Check) error {
	failed := Summary(checks)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(Report{OK: failed == 0, Failed: failed, Checks: checks})
}
