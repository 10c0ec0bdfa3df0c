package store

import (
	"context"
	"errors"
	"fmt"
)

// Kind classifies a failed operation; the filesystem maps each to one errno.
type Kind int

const (
	KindIO           Kind = iota // the store itself failed
	KindInvalid                  // unknown model, malformed or oversized input
	KindQuota                    // the token's device limit is reached
	KindNoSpace                  // the model can never fit the pool
	KindAgain                    // not enough free GPUs right now
	KindNotFound                 // unknown device or token
	KindBusy                     // a job is running
	KindExists                   // the name is taken
	KindNoProcess                // no such process, or no job to stop
	KindKeyRejected              // an unknown or revoked token secret
	KindUnbound                  // the caller is bound to no token
	KindNotPermitted             // an operation the tree never allows, or another user's process
	KindDenied                   // a file opened against its mode
	KindInterrupted              // the caller gave up: its request was interrupted
	KindExhausted                // every device id has been handed out (ids are never reused)
	KindStale                    // a node of a revoked token (a new token of the same name is another)
)

var (
	// ErrNeverAllowed is the failure of an operation the tree never allows.
	ErrNeverAllowed = &Error{KindNotPermitted, "Operation not permitted: this tree only allows mkdir and rmdir in devices/ and writes to command files."}
	// ErrWrongMode is the failure of opening a read-only file for writing, or a write-only one for reading.
	ErrWrongMode = &Error{KindDenied, "Permission denied: see the file's mode for what it allows."}
)

// Error is a failed operation with a sentence a person can act on.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Errorf makes a failure of kind with a sentence, for the node's runtime,
// whose process rules share the registry's kinds.
func Errorf(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func errorf(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// KindOf reports the kind of err; errors that are not *Error are KindIO.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindIO
}

// ioError wraps an engine failure so that its cause reaches the log.
func ioError(err error) error {
	var e *Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Kind: KindInterrupted, Msg: "The request was interrupted."}
	}
	return &Error{Kind: KindIO, Msg: "The state store failed: " + err.Error()}
}
