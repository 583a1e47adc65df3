package result

// SetParallelFlags turns running the detector beside the cleaning walk on
// or off, and returns the setting before.
func SetParallelFlags(on bool) bool {
	was := parallelFlags
	parallelFlags = on
	return was
}

// SetFlagging turns the injection detector in Sanitize on or off, and
// returns the setting before.
func SetFlagging(on bool) bool {
	was := flagging
	flagging = on
	return was
}
