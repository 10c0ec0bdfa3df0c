package main

import (
	"context"
	"log/slog"

	"github.com/moreh-io/moreh/store"
)

// watchState logs, once, within a second, that the state file no longer
// names the open database (unlinked, replaced, moved), and how to recover;
// from then on every write fails with EIO and a line in errors.
func watchState(ctx context.Context, eng store.Engine, db string, log *slog.Logger) {
	w, ok := eng.(store.Watched)
	if !ok {
		return
	}
	go func() {
		select {
		case <-w.Lost():
			log.Error("the state file is lost: writes fail with EIO", "db", db, "err", w.LostErr())
		case <-ctx.Done():
		}
	}()
}
