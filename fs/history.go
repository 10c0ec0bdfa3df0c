package fs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/moreh-io/moreh/store"
)

// historyFormat lays out the columns of tokens/<n>/history: one ended job a
// line, oldest first, fixed columns that a person reads and awk splits.
const historyFormat = "%7s  %6s  %-16s  %5s  %-20s  %-20s  %8s  %-7s  %8s  %4s  %-16s  %s\n"

// appendHistory renders entries as the history file.
func appendHistory(b []byte, entries []store.HistoryEntry) []byte {
	b = fmt.Appendf(b, historyFormat, "JOB", "DEVICE", "MODEL", "UNITS", "STARTED", "ENDED", "SECONDS", "REASON", "PEAK_MIB", "UTIL", "FITS", "NODES")
	for _, h := range entries {
		util := "-"
		if h.MeanUtilization != store.NoFigure {
			util = fmt.Sprint(h.MeanUtilization)
		}
		seconds := h.Ended.Sub(h.Started).Round(time.Second) / time.Second
		b = fmt.Appendf(b, historyFormat, formatUint(h.Job), formatUint(h.Device), h.Model, fmt.Sprint(h.Units),
			h.Started.UTC().Format(time.RFC3339), h.Ended.UTC().Format(time.RFC3339), fmt.Sprint(int64(seconds)),
			h.Reason, formatUint(h.PeakMiB), util, h.Fits, strings.Join(h.Nodes, ","))
	}
	return b
}

// appendHistoryCSV renders entries as history.csv, nvidia-smi's CSV style:
// a header with units, values joined by ", " (nodes by ";").
func appendHistoryCSV(b []byte, entries []store.HistoryEntry) []byte {
	b = append(b, "job, device, model, units, started, ended, seconds, reason, peak_memory [MiB], utilization [%], fits, nodes\n"...)
	for _, h := range entries {
		util := "[N/A]"
		if h.MeanUtilization != store.NoFigure {
			util = fmt.Sprint(h.MeanUtilization, " %")
		}
		b = fmt.Appendf(b, "%d, %d, %s, %d, %s, %s, %d, %s, %d MiB, %s, %s, %s\n", h.Job, h.Device, h.Model, h.Units,
			h.Started.UTC().Format(time.RFC3339), h.Ended.UTC().Format(time.RFC3339), int64(h.Ended.Sub(h.Started).Round(time.Second)/time.Second),
			h.Reason, h.PeakMiB, util, h.Fits, strings.Join(h.Nodes, ";"))
	}
	return b
}

func (d *tokenDir) renderHistoryCSV(ctx context.Context) ([]byte, error) {
	entries, err := d.t.Registry.History(ctx, d.token)
	if err != nil {
		return nil, err
	}
	return appendHistoryCSV(nil, entries), nil
}

func (d *tokenDir) renderHistory(ctx context.Context) ([]byte, error) {
	entries, err := d.t.Registry.History(ctx, d.token)
	if err != nil {
		return nil, err
	}
	return appendHistory(nil, entries), nil
}

func (d *tokenDir) renderHistoryJSON(ctx context.Context) ([]byte, error) {
	entries, err := d.t.Registry.History(ctx, d.token)
	if err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []store.HistoryEntry{}
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	return append(b, '\n'), err
}

// renderUsage is tokens/<n>/usage: what the token's ended jobs consumed.
func (d *tokenDir) renderUsage(ctx context.Context) ([]byte, error) {
	tok, err := d.t.Registry.Token(ctx, d.token)
	if err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf("unit_seconds %d.%03d\n", tok.UnitMillis/1000, tok.UnitMillis%1000)), nil
}
