package fs

import (
	"bytes"
	"context"
	"strconv"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/store"
)

// deviceName is the product name every device shows in the table.
const deviceName = "KT AI Accelerator"

func formatUint(n uint64) string { return strconv.FormatUint(n, 10) }

func formatUtilization(u int) string {
	if u < 0 {
		return "-"
	}
	return strconv.Itoa(u)
}

func (t *tree) renderVersion(context.Context) ([]byte, error) {
	v := t.Version
	return []byte("moreh-smi " + v + "\nclient " + v + "\nserver " + t.Server + "\ncontainment: " + t.Node.Containment() + "\n"), nil
}

// renderModels is /moreh/models: "<n>\t<name>\t<units>\t<MiB>" per model,
// and a fifth field "default" on the line of the model that a token without
// devices shows as current (a reader of four fields sees the old file).
func renderModels() []byte {
	var b bytes.Buffer
	for _, m := range store.Models() {
		b.WriteString(strconv.Itoa(m.Number) + "\t" + m.Name + "\t" + strconv.Itoa(m.Units) + "\t" + formatUint(m.MemoryMiB()))
		if m.Name == store.DefaultModel {
			b.WriteString("\tdefault")
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// tableView gathers the table of a token's devices, or of device only when
// it is not 0.
func (t *tree) tableView(ctx context.Context, token string, device uint64) (TableView, node.TokenStatus, error) {
	st, err := t.Node.TokenStatus(ctx, token, device)
	if err != nil {
		return TableView{}, st, err
	}
	tv := TableView{Time: t.Now(), SMIVersion: t.Version, ClientVersion: t.Version, ServerVersion: t.Server,
		Devices: make([]DeviceRow, 0, len(st.Devices))}
	for _, d := range st.Devices {
		tv.Devices = append(tv.Devices, DeviceRow{
			ID: d.ID, Current: d.ID == st.Token.Current, Name: deviceName, Model: d.Model,
			MemoryUsedMiB: d.Usage.UsedMiB, MemoryTotalMiB: d.Usage.TotalMiB, Utilization: d.Usage.Utilization,
			Waiting: d.Waiting && d.Job.ID == 0,
		})
	}
	for _, p := range st.Processes {
		tv.Processes = append(tv.Processes, ProcessRow{Device: p.Device, JobID: p.Job, PID: p.PID, Name: p.Name, MemoryMiB: p.MemoryMiB})
	}
	return tv, st, nil
}

func (t *tree) renderStatus(ctx context.Context, token string, device uint64) ([]byte, error) {
	tv, _, err := t.tableView(ctx, token, device)
	if err != nil {
		return nil, err
	}
	return appendTable(nil, tv), nil
}

// renderDevicesTable is tokens/<name>/devices.table: the short table of
// the token's devices (appendDevicesTable).
func (t *tree) renderDevicesTable(ctx context.Context, token string) ([]byte, error) {
	tv, _, err := t.tableView(ctx, token, 0)
	if err != nil {
		return nil, err
	}
	return appendDevicesTable(nil, tv.Devices), nil
}

func (t *tree) renderStatusJSON(ctx context.Context, token string, device uint64) ([]byte, error) {
	tv, v, err := t.tableView(ctx, token, device)
	if err != nil {
		return nil, err
	}
	out := statusJSON{
		Time: tv.Time.Format("2006-01-02T15:04:05Z07:00"), SMIVersion: tv.SMIVersion,
		ClientVersion: tv.ClientVersion, ServerVersion: tv.ServerVersion, Token: token,
		Limit:   limitJSON{Max: v.Token.MaxDevices, Used: len(v.Devices)},
		Devices: make([]deviceJSON, 0, len(tv.Devices)), Processes: make([]processJSON, 0, len(tv.Processes)),
	}
	if v.Token.Current != 0 {
		out.Current = &v.Token.Current
	}
	for _, r := range tv.Devices {
		m, _ := store.LookupModel(r.Model)
		d := deviceJSON{ID: r.ID, Current: r.Current, Name: r.Name, Model: r.Model, Units: m.Units,
			MemoryUsedMiB: r.MemoryUsedMiB, MemoryTotalMiB: r.MemoryTotalMiB}
		if r.Utilization >= 0 {
			d.Utilization = &r.Utilization
		}
		switch {
		case r.Utilization >= 0 || v.Devices[len(out.Devices)].Job.ID != 0:
			d.State = "running"
		case r.Waiting:
			d.State = "waiting"
		default:
			d.State = "idle"
		}
		out.Devices = append(out.Devices, d)
	}
	for _, p := range tv.Processes {
		out.Processes = append(out.Processes, processJSON(p))
	}
	b := make([]byte, 0, 512+320*len(out.Devices)+160*len(out.Processes)) // about its size, to grow it once
	return append(out.appendIndented(b), '\n'), nil
}

const readmeText = `moreh: virtual accelerator devices as files

  cat models                      the models a device can have
  mkdir devices/Large.256GB       create a device (it becomes current)
  cat current                     the current device id
  echo 2027 > current             switch to device 2027
  echo xLarge.512GB > devices/2027/model
                                  change a device's model
  rmdir devices/2027              remove a device
  cat status                      the moreh-smi table of your devices
  cat devices/2027/status         one device's table (moreh-smi -i 2027)
  cat devices/2027/usage          memory_used_mib, memory_total_mib, utilization
  cat limit                       your device limit and how many you hold
  cat tokens/<you>/devices.table  your devices, the short table (Device, Name, Model)
  cat 'query-gpu/index,name,memory.used:csv,noheader'
                                  the pool's GPUs as nvidia-smi --query-gpu prints them
  cat tokens/<you>/errors         why your last operations failed
  echo $$ > devices/2027/procs    make this shell a job of device 2027 (it may wait in the queue)
  cat devices/2027/job            blocks while your job waits, then "job N\nstate running";
                                  EAGAIN with O_NONBLOCK, EINTR when interrupted by a signal
  cat devices/2027/waiting        why your job waits, one message per reason, then
                                  "[info] Moreh Job ID: N" once it runs (what moreh-run prints)
  cat queue                       the jobs waiting for GPUs: position job token device model
                                  units since (other tokens' token and device shown "-")

devices, current and status are links into tokens/<your token>/.
Every write is one command of at most 4096 bytes; one trailing newline is ignored.
Failures return an errno (EINVAL bad input, EDQUOT limit reached, ENOENT unknown
device, EPERM not allowed here, EIO store failure) and add a line to errors.
The shims moreh-smi, moreh-switch-model and moreh-run wrap all of this.
`
