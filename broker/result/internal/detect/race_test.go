//go:build race

package detect

// raceEnabled makes the slowest checks sample their inputs: the race
// detector slows them tenfold, and the plain run covers them whole.
const raceEnabled = true
