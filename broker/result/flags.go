package result

import (
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/airlock/airlock/broker/result/internal/detect"
)

// The injection detector reads each string as it came and changes
// nothing, so it need not wait for the cleaning: on a large result it runs
// on other cores beside the walk that cleans, and its flags join the
// report when both are done. The report is the same either way; a small
// result is not worth a goroutine.

// parallelFlagBytes is the size of the strings of a result from which the
// detector runs beside the cleaning walk.
const parallelFlagBytes = 32 << 10

// parallelFlags lets the detector run beside the walk; tests turn it off
// to compare the reports.
var parallelFlags = true

// maxFlagWorkers bounds the goroutines one result's detection takes
// besides its own.
const maxFlagWorkers = 4

// flagSet holds the categories of each distinct string of a result, found
// by goroutines that have finished once wait returns.
type flagSet struct {
	// ready is closed once the first goroutine has gathered the strings
	// and cut them into chunks; the fields below it are set by then.
	ready  chan struct{}
	index  map[string]int
	texts  []string
	cats   []detect.Category
	chunks [][2]int // [from, to) in texts
	next   atomic.Int64
	wg     sync.WaitGroup
	// readyOnce closes ready, also when gathering panicked.
	readyOnce sync.Once
	// panicked holds a goroutine's panic, recovered so that it does not
	// end the broker, with the stack it began in; reportFlags panics with
	// it again on the caller's goroutine, where Process recovers it, and
	// the operator's log shows where it began, not where it was raised
	// again.
	panicked atomic.Pointer[PanicError]
}

// guard recovers a goroutine's panic into f.panicked, and closes ready so
// that nobody waits for strings that will not come.
func (f *flagSet) guard() {
	if r := recover(); r != nil {
		f.panicked.CompareAndSwap(nil, &PanicError{Value: r, Stack: debug.Stack()})
	}
	f.readyOnce.Do(func() { close(f.ready) })
}

// pendingFlag is a string whose flags are reported at steps once the
// detector has read it.
type pendingFlag struct {
	steps  []step
	raw    string
	suffix string
}

// startFlags starts detecting injected instructions in the strings and
// keys of v, up to MaxDepth, on goroutines of their own, and returns nil
// when v is too small to be worth it or there is one core. The strings
// are gathered on the first goroutine, so that the walk that cleans them
// starts at once.
func startFlags(v any) *flagSet {
	procs := runtime.GOMAXPROCS(0)
	if procs < 2 || !parallelFlags || !textsReach(v, 0, parallelFlagBytes) {
		return nil
	}
	f := &flagSet{ready: make(chan struct{})}
	workers := min(procs-1, maxFlagWorkers)
	f.wg.Add(workers)
	go func() {
		defer f.wg.Done()
		defer f.guard()
		f.gather(v)
		f.readyOnce.Do(func() { close(f.ready) })
		f.work()
	}()
	for range workers - 1 {
		go func() {
			defer f.wg.Done()
			defer f.guard()
			<-f.ready
			f.work()
		}()
	}
	return f
}

// textsReach reports whether the strings and keys of v, up to MaxDepth,
// hold at least n bytes; it stops counting once they do.
func textsReach(v any, depth, n int) bool {
	return n <= 0 || textBytes(v, depth, n) >= n
}

// textBytes counts the bytes of the strings and keys of v up to MaxDepth,
// or at least limit of them.
func textBytes(v any, depth, limit int) int {
	total := 0
	switch v := v.(type) {
	case string:
		return len(v)
	case map[string]any:
		if depth >= MaxDepth {
			return 0
		}
		for k, e := range v {
			if total += len(k) + textBytes(e, depth+1, limit-total-len(k)); total >= limit {
				return total
			}
		}
	case []any:
		if depth >= MaxDepth {
			return 0
		}
		for _, e := range v {
			if total += textBytes(e, depth+1, limit-total); total >= limit {
				return total
			}
		}
	}
	return total
}

// gather notes each distinct string and key of v, up to MaxDepth, and cuts
// them into chunks of about flagChunk bytes, which the detector's
// goroutines take in turn; the walk that cleans takes what is left once
// it is done, so that neither waits for the other longer than a chunk.
func (f *flagSet) gather(v any) {
	f.index = map[string]int{}
	var collect func(v any, depth int)
	collect = func(v any, depth int) {
		add := func(s string) {
			if _, ok := f.index[s]; !ok {
				f.index[s] = len(f.texts)
				f.texts = append(f.texts, s)
			}
		}
		switch v := v.(type) {
		case string:
			add(v)
		case map[string]any:
			if depth >= MaxDepth {
				return
			}
			for k, e := range v {
				add(k)
				collect(e, depth+1)
			}
		case []any:
			if depth >= MaxDepth {
				return
			}
			for _, e := range v {
				collect(e, depth+1)
			}
		}
	}
	collect(v, 0)
	f.cats = make([]detect.Category, len(f.texts))
	for from := 0; from < len(f.texts); {
		to, n := from, 0
		for to < len(f.texts) && (n < flagChunk || to == from) {
			n += len(f.texts[to])
			to++
		}
		f.chunks = append(f.chunks, [2]int{from, to})
		from = to
	}
}

// scanText is the detector; tests make it fail.
var scanText = detect.Scan

// flagChunk is about how many bytes of text a goroutine scans at a time.
const flagChunk = 16 << 10

// work scans chunks until none is left.
func (f *flagSet) work() {
	for {
		k := int(f.next.Add(1)) - 1
		if k >= len(f.chunks) {
			return
		}
		for i := f.chunks[k][0]; i < f.chunks[k][1]; i++ {
			f.cats[i] = scanText(f.texts[i])
		}
	}
}

// flagLater notes that raw, the string at the current path, is flagged
// there (with suffix on each detail) once the detector has read it.
func (z *sanitizer) flagLater(raw, suffix string) {
	if z.flags != nil {
		z.pending = append(z.pending, pendingFlag{steps: slices.Clone(z.path), raw: raw, suffix: suffix})
	}
}

// reportFlags waits for the detector and adds its flags to the report.
func (z *sanitizer) reportFlags() {
	if z.flags == nil {
		return
	}
	<-z.flags.ready
	if z.flags.panicked.Load() == nil {
		z.flags.work()
	}
	z.flags.wg.Wait()
	if pe := z.flags.panicked.Load(); pe != nil {
		panic(pe)
	}
	for _, p := range z.pending {
		names := z.flags.cats[z.flags.index[p.raw]].Names()
		if len(names) == 0 {
			continue
		}
		path := formatPath(p.steps)
		for _, name := range names {
			z.report.add(p.steps, path, KindFlagged, name+p.suffix, 1)
		}
	}
}
