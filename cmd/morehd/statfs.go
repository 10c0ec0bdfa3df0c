package main

import (
	"errors"
	"syscall"
	"time"
)

// mountpointAnswerWait bounds the start-up check of the mountpoint: a FUSE
// mount whose daemon is stopped (SIGSTOP) or hung never answers statfs.
const mountpointAnswerWait = 2 * time.Second

// errMountHung is statfsWithin's failure when dir did not answer in time.
var errMountHung = errors.New("the mountpoint does not answer")

// statfsWithin is statfs(dir) that gives up after wait. The call left
// behind stays blocked in the kernel until the old daemon answers or this
// process exits, which it then does, with the sentence naming the fix.
func statfsWithin(dir string, wait time.Duration) error {
	done := make(chan error, 1)
	go func() {
		var sfs syscall.Statfs_t
		done <- syscall.Statfs(dir, &sfs)
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return errMountHung
	}
}
