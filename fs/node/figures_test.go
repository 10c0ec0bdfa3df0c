package node

import (
	"testing"

	"github.com/moreh-io/moreh/store"
)

// TestJobFiguresPeak: a peak the kernel kept (memory.peak) raises the
// samples' highest, never lowers it, and stands alone for a job no sample
// read (its utilisation then unknown).
func TestJobFiguresPeak(t *testing.T) {
	var f jobFigures
	f.notePeak(1, 300)
	if got := f.of(1); got != (store.JobFigures{PeakMiB: 300, MeanUtilization: store.NoFigure}) {
		t.Errorf("a job no sample read, memory.peak 300 MiB: %+v", got)
	}
	f.byJob[2] = &figureSum{peakMiB: 100, utilSum: 90, samples: 3}
	f.notePeak(2, 250)
	if got := f.of(2); got != (store.JobFigures{PeakMiB: 250, MeanUtilization: 30}) {
		t.Errorf("samples' peak 100 MiB, memory.peak 250 MiB: %+v", got)
	}
	f.notePeak(2, 20)
	if got := f.of(2); got.PeakMiB != 250 {
		t.Errorf("a lower memory.peak lowered the figure: %+v", got)
	}
	if got := f.of(3); got != (store.JobFigures{MeanUtilization: store.NoFigure}) {
		t.Errorf("an unknown job: %+v", got)
	}
}
