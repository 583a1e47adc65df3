package result

// SetParallelFlags turns running the detector beside the cleaning walk on
// or off, and returns the setting before.
func SetParallelFlags(on bool) bool {
	was := parallelFlags
	parallelFlags = on
	return was
}
