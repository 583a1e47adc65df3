package sandbox

import (
	"context"
	"errors"
	"time"
)

// cleanupTimeout bounds teardown. It is generous because a stuck teardown
// leaks a sandbox, while a slow one only delays a response.
const cleanupTimeout = 30 * time.Second

// undo is a stack of teardown steps for a multi-step setup: each step that
// succeeds pushes its inverse, and Run pops them all, last first.
type undo struct {
	steps []func(context.Context) error
}

// Push adds a teardown step.
func (u *undo) Push(f func(context.Context) error) { u.steps = append(u.steps, f) }

// Run runs every step, last first, under a context that the caller's
// cancellation cannot cut short, and returns all errors joined.
func (u *undo) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var errs []error
	for i := len(u.steps) - 1; i >= 0; i-- {
		errs = append(errs, u.steps[i](ctx))
	}
	u.steps = nil
	return errors.Join(errs...)
}
