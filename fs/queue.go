package fs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/store"
)

// The queue (/moreh/queue, /moreh/queue.table, `moreh-smi --queue`) and the
// messages of a waiting job (devices/<id>/waiting, which moreh-run prints).

// QueueRow is one waiting job as the caller may see it.
type QueueRow struct {
	Position int
	Job      uint64
	Token    string // "" when the caller may not see it: shown "-"
	Device   uint64 // 0 when hidden
	Model    string
	Units    int
	Since    time.Time
	Reason   store.WaitReason
}

// queueRows are the runtime's queue as uid may see it: another token's
// entries keep their place, model and units, not their token or device.
func (t *tree) queueRows(ctx context.Context) ([]QueueRow, error) {
	queue, err := t.Node.Queue(ctx)
	if err != nil {
		return nil, err
	}
	rows := make([]QueueRow, 0, len(queue))
	for _, e := range queue {
		r := QueueRow{Position: e.Wait.Position, Job: e.Job.ID, Token: e.Job.Token, Device: e.Job.Device, Model: e.Model,
			Units: e.Wait.Units, Since: e.Job.Queued, Reason: e.Wait.Reason}
		sees, err := t.Registry.SeesToken(ctx, callerUID(ctx), e.Job.Token)
		if err != nil {
			return nil, err
		}
		if !sees {
			r.Token, r.Device = "", 0
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// appendQueue appends the queue file's lines: "<position> <job> <token|->
// <device|-> <model> <units> <waiting since, RFC 3339>".
func appendQueue(b []byte, rows []QueueRow) []byte {
	for _, r := range rows {
		token, device := "-", "-"
		if r.Token != "" {
			token, device = r.Token, formatUint(r.Device)
		}
		b = fmt.Appendf(b, "%d %d %s %s %s %d %s\n", r.Position, r.Job, token, device, r.Model, r.Units, r.Since.UTC().Format(time.RFC3339))
	}
	return b
}

const noWaitingJobs = "No job is waiting."

var queueColumns = []column{
	{header: "Position", right: true},
	{header: "Job ID", right: true},
	{header: "Token"},
	{header: "Device", right: true},
	{header: "Model"},
	{header: "Units", right: true},
	{header: "Waiting Since"},
	{header: "Waiting For"},
}

// waitingFor names a reason in the table.
var waitingFor = map[store.WaitReason]string{
	store.WaitPool:   "GPUs",
	store.WaitDevice: "device",
	store.WaitQuota:  "quota",
	// the pool shrank below its model since it queued
	store.WaitPoolSize: "pool size",
}

// appendQueueTable appends the queue table (moreh-smi --queue) of rows to b.
func appendQueueTable(b []byte, rows []QueueRow) []byte {
	cells := make([][]string, len(rows))
	for i, r := range rows {
		token, device := "-", "-"
		if r.Token != "" {
			token, device = store.TermSafe(r.Token), formatUint(r.Device)
		}
		cells[i] = []string{strconv.Itoa(r.Position), formatUint(r.Job), token, device, r.Model, strconv.Itoa(r.Units),
			r.Since.UTC().Format(time.RFC3339), waitingFor[r.Reason]}
	}
	return appendListing(b, queueColumns, cells, noWaitingJobs)
}

func (t *tree) renderQueue(ctx context.Context) ([]byte, error) {
	rows, err := t.queueRows(ctx)
	return appendQueue(nil, rows), err
}

func (t *tree) renderQueueTable(ctx context.Context) ([]byte, error) {
	rows, err := t.queueRows(ctx)
	if err != nil {
		return nil, err
	}
	return appendQueueTable(nil, rows), nil
}

// The messages moreh-run prints, as the real product words them.
const (
	poolMessage     = "[warning] Not enough resources are currently available for KT AI Accelerator. All resources in the system are being used by other users. The program will resume automatically when resources become available...\n"
	deviceMessage   = "[warning] KT AI Accelerator is already in use by another process:\n(pid: %d) %s\nTwo or more processes cannot use KT AI Accelerator at the same time. The program will resume automatically after the process %d terminates...\n"
	quotaMessage    = "[warning] The GPU unit quota of this token (max_units %d) is in use: its running jobs hold %d units and this job needs %d. The program will resume automatically when they release enough...\n"
	poolSizeMessage = "[warning] The pool has only %d GPU units now and this job needs %d: it holds none meanwhile. The program will resume automatically when enough GPUs are added to the pool...\n"
	startMessage    = "[info] Moreh Job ID: %d\n"
)

// waitMessage is what a waiting job's waiting file says of it; "" once it runs.
func waitMessage(w node.JobWait) string {
	if w.Started() {
		return ""
	}
	switch w.Wait.Reason {
	case store.WaitDevice:
		cmd := w.BlockerCmd
		if cmd == "" && w.BlockerNode != "" {
			cmd = "(on node " + store.TermSafe(w.BlockerNode) + ")"
		}
		return fmt.Sprintf(deviceMessage, w.BlockerPID, strings.TrimSpace(cmd), w.BlockerPID)
	case store.WaitQuota:
		return fmt.Sprintf(quotaMessage, w.Wait.MaxUnits, w.Wait.Held, w.Wait.Units)
	case store.WaitPoolSize:
		return fmt.Sprintf(poolSizeMessage, w.Wait.Pool, w.Wait.Units)
	}
	return poolMessage
}

// jobState is the job file: "job <id>\nstate running\n".
func jobState(w node.JobWait) []byte {
	state := "running"
	if !w.Started() {
		state = "waiting"
	}
	return fmt.Appendf(nil, "job %d\nstate %s\n", w.Job.ID, state)
}
