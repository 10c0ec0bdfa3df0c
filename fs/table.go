package fs

import (
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/store"
)

// NoUtilization marks a device with no running job; the table shows "-".
const NoUtilization = node.NoUtilization

// TableView is everything one moreh-smi table shows.
type TableView struct {
	Time          time.Time // printed as "15:04:05 January 2, 2006 " (note the trailing space)
	SMIVersion    string    // "22.10.1" in "Moreh-SMI 22.10.1"
	ClientVersion string
	ServerVersion string
	Devices       []DeviceRow
	Processes     []ProcessRow
}

// DeviceRow is one line of the device table.
type DeviceRow struct {
	ID             uint64
	Current        bool
	Name           string // "KT AI Accelerator"
	Model          string // "Medium.128GB"
	MemoryUsedMiB  uint64
	MemoryTotalMiB uint64
	Utilization    int  // percent, or NoUtilization
	Waiting        bool // no job runs and one waits in the queue: "waiting"
}

// ProcessRow is one line of the processes table.
type ProcessRow struct {
	Device    uint64
	JobID     uint64
	PID       int
	Name      string
	MemoryMiB uint64
}

const (
	timeLayout  = "15:04:05 January 2, 2006 "
	noDevices   = "No devices. Create one with: moreh-smi device --add"
	noProcesses = "No running processes found"
	cellPad     = "  " // on each side of every cell's content
)

// The device table's header cells as the seed document prints them at its
// narrowest; Name and Model keep the seed's uneven centring.
var deviceColumns = []column{
	{header: "Device", right: true},
	{header: "      Name       "},
	{header: "    Model   "},
	{header: "Memory Usage"},
	{header: "Total Memory"},
	{header: "Utilization"},
}

var processColumns = []column{
	{header: "Device", right: true},
	{header: "Job ID", right: true},
	{header: "PID", right: true},
	{header: "Process"},
	{header: "Memory Usage"},
}

// WriteTable renders v as the moreh-smi table.
func WriteTable(w io.Writer, v TableView) error {
	_, err := w.Write(appendTable(nil, v))
	return err
}

// appendTable appends the moreh-smi table of v to b.
func appendTable(b []byte, v TableView) []byte {
	devices, title := deviceGrid(v)
	processes := processGrid(v.Processes)
	b = slices.Grow(b, len(timeLayout)+devices.size()+len(title)+len("\nProcesses:\n")+processes.size())
	b = v.Time.AppendFormat(b, timeLayout)
	b = append(b, '\n')
	b = devices.rule(b, '-')
	b = append(b, title...)
	b = devices.rule(b, '-')
	b = devices.header(b)
	b = devices.rule(b, '=')
	if len(devices.rows) == 0 {
		b = devices.banner(b, noDevices)
		b = devices.rule(b, '-')
	}
	for _, r := range devices.rows {
		b = devices.row(b, r)
		b = devices.rule(b, '-') // every device row is closed by a rule, like nvidia-smi
	}
	b = append(b, "\nProcesses:\n"...)
	b = processes.rule(b, '-')
	b = processes.header(b)
	b = processes.rule(b, '=')
	if len(processes.rows) == 0 {
		b = processes.banner(b, noProcesses)
	}
	for _, r := range processes.rows { // not separated, unlike the devices
		b = processes.row(b, r)
	}
	return processes.rule(b, '-')
}

// appendDevicesTable appends the token's short device table, the one the
// real moreh-smi prints after device --add, --rm and --switch: the first
// three columns of the device table (Device, Name, Model), the current
// device marked "* ", every row closed by a rule; no timestamp or title.
func appendDevicesTable(b []byte, devices []DeviceRow) []byte {
	rows := make([][]string, len(devices))
	for i, d := range devices {
		rows[i] = deviceCells(d)[:3]
	}
	g := newGrid(deviceColumns[:3], rows)
	if len(rows) == 0 {
		g.fit(bannerWidth(noDevices))
	}
	b = g.rule(b, '-')
	b = g.header(b)
	b = g.rule(b, '=')
	if len(rows) == 0 {
		b = g.banner(b, noDevices)
		b = g.rule(b, '-')
	}
	for _, r := range rows {
		b = g.row(b, r)
		b = g.rule(b, '-')
	}
	return b
}

// deviceGrid lays out the device table and its title line.
func deviceGrid(v TableView) (*grid, string) {
	rows := make([][]string, len(v.Devices))
	for i, d := range v.Devices {
		rows[i] = deviceCells(d)
	}
	g := newGrid(deviceColumns, rows)
	left := "|" + cellPad + "Moreh-SMI " + v.SMIVersion
	right := "Client Version: " + v.ClientVersion + "  Server Version: " + v.ServerVersion + cellPad + "|"
	g.fit(textWidth(left) + len(cellPad) + textWidth(right))
	if len(rows) == 0 {
		g.fit(bannerWidth(noDevices))
	}
	return g, left + spaces(g.width()-textWidth(left)-textWidth(right)) + right + "\n"
}

// processGrid lays out the processes table.
func processGrid(ps []ProcessRow) *grid {
	rows := make([][]string, len(ps))
	for i, p := range ps {
		rows[i] = processCells(p)
	}
	g := newGrid(processColumns, rows)
	if len(rows) == 0 {
		g.fit(bannerWidth(noProcesses))
	}
	return g
}

func deviceCells(d DeviceRow) []string {
	mark := "  "
	if d.Current {
		mark = "* "
	}
	return []string{
		mark + strconv.FormatUint(d.ID, 10),
		store.TermSafe(d.Name),
		store.TermSafe(d.Model),
		mib(d.MemoryUsedMiB),
		mib(d.MemoryTotalMiB),
		deviceUtilization(d),
	}
}

// deviceUtilization is a device's Utilization cell: "waiting" while its job
// is queued and none runs.
func deviceUtilization(d DeviceRow) string {
	if d.Waiting && d.Utilization < 0 {
		return "waiting"
	}
	return utilization(d.Utilization)
}

func processCells(p ProcessRow) []string {
	return []string{
		strconv.FormatUint(p.Device, 10),
		strconv.FormatUint(p.JobID, 10),
		strconv.Itoa(p.PID),
		store.TermSafe(p.Name), // anyone can name their process: never a terminal's command
		mib(p.MemoryMiB),
	}
}

// mib shows n as "%7d MiB" does.
func mib(n uint64) string {
	var buf [32]byte
	b := strconv.AppendUint(append(buf[:0], "       "...), n, 10)
	return string(append(b[min(len(b)-7, 7):], " MiB"...))
}

// utilization shows a percentage, or "-" for NoUtilization (or any other
// negative value, which cannot be a percentage).
func utilization(u int) string {
	if u < 0 {
		return "-"
	}
	return strconv.Itoa(u) + "%"
}

// column describes one column of a grid.
type column struct {
	header string // header cell content at the column's narrowest
	right  bool   // right-align the data cells (headers are centred)
}

// grid is a bordered table whose columns are as wide as their widest cell.
type grid struct {
	cols   []column
	rows   [][]string
	widths []int // content width of each column, without cellPad
}

func newGrid(cols []column, rows [][]string) *grid {
	g := &grid{cols: cols, rows: rows, widths: make([]int, len(cols))}
	for i, c := range cols {
		g.widths[i] = textWidth(c.header)
		for _, r := range rows {
			g.widths[i] = max(g.widths[i], textWidth(r[i]))
		}
	}
	return g
}

// appendListing appends a grid of rows under cols, or the banner empty
// across it when there are none (as the pool and the queue show).
func appendListing(b []byte, cols []column, cells [][]string, empty string) []byte {
	g := newGrid(cols, cells)
	if len(cells) == 0 {
		g.fit(bannerWidth(empty))
	}
	b = g.rule(b, '-')
	b = g.header(b)
	b = g.rule(b, '=')
	if len(cells) == 0 {
		b = g.banner(b, empty)
	}
	for _, r := range cells {
		b = g.row(b, r)
	}
	return g.rule(b, '-')
}

// width is the length of every line of the grid, borders included.
func (g *grid) width() int {
	n := 1 // the leading border
	for _, w := range g.widths {
		n += len(cellPad) + w + len(cellPad) + 1
	}
	return n
}

// size is about the bytes of the whole grid: its lines, a rule after each.
func (g *grid) size() int {
	return (g.width() + 1) * (2*len(g.rows) + 6)
}

// fit widens the last column so that a line of n characters fits the grid.
func (g *grid) fit(n int) {
	if d := n - g.width(); d > 0 {
		g.widths[len(g.widths)-1] += d
	}
}

func (g *grid) rule(b []byte, fill byte) []byte {
	b = append(b, '+')
	b = appendRepeat(b, fill, g.width()-2)
	return append(b, "+\n"...)
}

// header writes the header row; a header wider than its text gets half the
// extra spaces on the left and the rest on the right.
func (g *grid) header(b []byte) []byte {
	b = append(b, '|')
	for i, c := range g.cols {
		k := g.widths[i] - textWidth(c.header)
		b = append(b, cellPad...)
		b = appendRepeat(b, ' ', k/2)
		b = append(b, c.header...)
		b = appendRepeat(b, ' ', k-k/2)
		b = append(b, cellPad+"|"...)
	}
	return append(b, '\n')
}

// row writes one data row, aligning each cell within its column.
func (g *grid) row(b []byte, r []string) []byte {
	b = append(b, '|')
	for i, s := range r {
		pad := g.widths[i] - textWidth(s)
		b = append(b, cellPad...)
		if g.cols[i].right {
			b = appendRepeat(b, ' ', pad)
			b = append(b, s...)
		} else {
			b = append(b, s...)
			b = appendRepeat(b, ' ', pad)
		}
		b = append(b, cellPad+"|"...)
	}
	return append(b, '\n')
}

// banner writes a row of one left-aligned text spanning the whole grid.
func (g *grid) banner(b []byte, text string) []byte {
	b = append(b, "|"+cellPad...)
	b = append(b, text...)
	b = appendRepeat(b, ' ', g.width()-2-len(cellPad)-textWidth(text))
	return append(b, "|\n"...)
}

// bannerWidth is the narrowest grid width that holds text as a banner.
func bannerWidth(text string) int {
	return 1 + len(cellPad) + textWidth(text) + len(cellPad) + 1
}

// textWidth counts runes, so that non-ASCII names keep borders aligned.
func textWidth(s string) int { return utf8.RuneCountInString(s) }

func spaces(n int) string { return strings.Repeat(" ", max(n, 0)) }

// appendRepeat appends n copies of c; none when n <= 0.
func appendRepeat(b []byte, c byte, n int) []byte {
	for range n {
		b = append(b, c)
	}
	return b
}
