package store

import "context"

// Fits reports whether an attach to device id would find its GPUs now, by
// the scheduler's rule, in one read transaction: nil when the device's job
// already runs, or when a new job for it would start at once (enough GPUs
// free beyond those held for the queue's head, and the token's quota
// allows); else the failure (KindAgain: not now; KindNoSpace: never).
func (r *Registry) Fits(ctx context.Context, token string, id uint64) error {
	err := r.eng.View(ctx, func(tx Tx) error {
		d, err := loadDevice(tx, token, id)
		if err != nil || d.Job != 0 {
			return err
		}
		t, err := loadToken(tx, token)
		if err != nil {
			return err
		}
		if err := mayEverFit(tx, d, t); err != nil {
			return err
		}
		st, err := loadSched(tx)
		if err != nil {
			return err
		}
		if st.pool == nil {
			if st.pool, st.jobs, err = loadPoolJobs(tx); err != nil {
				return err
			}
			st.held = map[string]int{}
			for _, j := range st.jobs {
				if !j.Waiting {
					st.held[j.Token] += jobUnits(j, st.pool)
				}
			}
		}
		// A new job takes its place after every waiting job of its priority or higher.
		probe := waiter{job: Job{ID: ^uint64(0), Token: token, Device: id, Node: r.opts.Node, Priority: t.Priority},
			units: d.ModelInfo().Units, maxUnits: t.MaxUnits}
		at := len(st.queue)
		for i, w := range st.queue {
			if w.job.Priority < t.Priority {
				at = i
				break
			}
		}
		queue := append(append(append([]waiter{}, st.queue[:at]...), probe), st.queue[at:]...)
		if starts, _ := plan(st.pool, queue, st.held, !r.noHold); starts[probe.job.ID] == nil {
			return errorf(KindAgain, "Not enough resources are currently available: device %d (%s) would wait in the queue.", d.ID, d.Model)
		}
		return nil
	})
	return ioError(err)
}
