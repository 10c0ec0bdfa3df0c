package fs

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// NoUtilization marks a device with no running job; the table shows "-".
const NoUtilization = -1

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
	Utilization    int // percent, or NoUtilization
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
	var b strings.Builder
	b.WriteString(v.Time.Format(timeLayout) + "\n")
	writeDevices(&b, v)
	b.WriteString("\nProcesses:\n")
	writeProcesses(&b, v.Processes)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeDevices writes the title and the device table.
func writeDevices(b *strings.Builder, v TableView) {
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

	g.rule(b, '-')
	b.WriteString(left + spaces(g.width()-textWidth(left)-textWidth(right)) + right + "\n")
	g.rule(b, '-')
	g.header(b)
	g.rule(b, '=')
	if len(rows) == 0 {
		g.banner(b, noDevices)
		g.rule(b, '-')
	}
	for _, r := range rows {
		g.row(b, r)
		g.rule(b, '-') // every device row is closed by a rule, like nvidia-smi
	}
}

// writeProcesses writes the processes table; its rows are not separated.
func writeProcesses(b *strings.Builder, ps []ProcessRow) {
	rows := make([][]string, len(ps))
	for i, p := range ps {
		rows[i] = processCells(p)
	}
	g := newGrid(processColumns, rows)
	if len(rows) == 0 {
		g.fit(bannerWidth(noProcesses))
	}

	g.rule(b, '-')
	g.header(b)
	g.rule(b, '=')
	if len(rows) == 0 {
		g.banner(b, noProcesses)
	}
	for _, r := range rows {
		g.row(b, r)
	}
	g.rule(b, '-')
}

func deviceCells(d DeviceRow) []string {
	mark := "  "
	if d.Current {
		mark = "* "
	}
	return []string{
		mark + strconv.FormatUint(d.ID, 10),
		d.Name,
		d.Model,
		mib(d.MemoryUsedMiB),
		mib(d.MemoryTotalMiB),
		utilization(d.Utilization),
	}
}

func processCells(p ProcessRow) []string {
	return []string{
		strconv.FormatUint(p.Device, 10),
		strconv.FormatUint(p.JobID, 10),
		strconv.Itoa(p.PID),
		p.Name,
		mib(p.MemoryMiB),
	}
}

func mib(n uint64) string { return fmt.Sprintf("%7d MiB", n) }

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
	widths []int // content width of each column, without cellPad
}

func newGrid(cols []column, rows [][]string) *grid {
	g := &grid{cols: cols, widths: make([]int, len(cols))}
	for i, c := range cols {
		g.widths[i] = textWidth(c.header)
		for _, r := range rows {
			g.widths[i] = max(g.widths[i], textWidth(r[i]))
		}
	}
	return g
}

// width is the length of every line of the grid, borders included.
func (g *grid) width() int {
	n := 1 // the leading border
	for _, w := range g.widths {
		n += len(cellPad) + w + len(cellPad) + 1
	}
	return n
}

// fit widens the last column so that a line of n characters fits the grid.
func (g *grid) fit(n int) {
	if d := n - g.width(); d > 0 {
		g.widths[len(g.widths)-1] += d
	}
}

func (g *grid) rule(b *strings.Builder, fill byte) {
	b.WriteString("+" + strings.Repeat(string(fill), g.width()-2) + "+\n")
}

// header writes the header row; a header wider than its text gets half the
// extra spaces on the left and the rest on the right.
func (g *grid) header(b *strings.Builder) {
	cells := make([]string, len(g.cols))
	for i, c := range g.cols {
		k := g.widths[i] - textWidth(c.header)
		cells[i] = spaces(k/2) + c.header + spaces(k-k/2)
	}
	g.line(b, cells)
}

// row writes one data row, aligning each cell within its column.
func (g *grid) row(b *strings.Builder, r []string) {
	cells := make([]string, len(r))
	for i, s := range r {
		pad := spaces(g.widths[i] - textWidth(s))
		if g.cols[i].right {
			cells[i] = pad + s
		} else {
			cells[i] = s + pad
		}
	}
	g.line(b, cells)
}

// line writes cells that are already padded to their column widths.
func (g *grid) line(b *strings.Builder, cells []string) {
	b.WriteString("|")
	for _, c := range cells {
		b.WriteString(cellPad + c + cellPad + "|")
	}
	b.WriteString("\n")
}

// banner writes a row of one left-aligned text spanning the whole grid.
func (g *grid) banner(b *strings.Builder, text string) {
	s := "|" + cellPad + text
	b.WriteString(s + spaces(g.width()-1-textWidth(s)) + "|\n")
}

// bannerWidth is the narrowest grid width that holds text as a banner.
func bannerWidth(text string) int {
	return 1 + len(cellPad) + textWidth(text) + len(cellPad) + 1
}

// textWidth counts runes, so that non-ASCII names keep borders aligned.
func textWidth(s string) int { return utf8.RuneCountInString(s) }

func spaces(n int) string { return strings.Repeat(" ", max(n, 0)) }
