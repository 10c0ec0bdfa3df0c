package store

import "context"

// Fits reports whether an attach to device id would find its GPUs now, by
// the rule Attach applies, in one read transaction: nil when the device's
// job already runs or enough GPUs are free, else the failure the attach
// would return (KindAgain: not now; KindNoSpace: never).
func (r *Registry) Fits(ctx context.Context, token string, id uint64) error {
	err := r.eng.View(ctx, func(tx Tx) error {
		d, err := loadDevice(tx, token, id)
		if err != nil || d.Job != 0 {
			return err
		}
		_, err = chooseGPUs(tx, d, r.opts.Node)
		return err
	})
	return ioError(err)
}
