package fs

import (
	"encoding/json"
	"strconv"
)

// statusJSON is status.json: the table's data for programs.
type statusJSON struct {
	Time          string        `json:"time"`
	SMIVersion    string        `json:"smi_version"`
	ClientVersion string        `json:"client_version"`
	ServerVersion string        `json:"server_version"`
	Token         string        `json:"token"`
	Current       *uint64       `json:"current"`
	Limit         limitJSON     `json:"limit"`
	Devices       []deviceJSON  `json:"devices"`
	Processes     []processJSON `json:"processes"`
}

type limitJSON struct {
	Max  int `json:"max"`
	Used int `json:"used"`
}

type deviceJSON struct {
	ID             uint64 `json:"id"`
	Current        bool   `json:"current"`
	Name           string `json:"name"`
	Model          string `json:"model"`
	Units          int    `json:"units"`
	MemoryUsedMiB  uint64 `json:"memory_used_mib"`
	MemoryTotalMiB uint64 `json:"memory_total_mib"`
	Utilization    *int   `json:"utilization"` // null while no job runs
	State          string `json:"state"`       // idle, running, or waiting (in the queue)
}

type processJSON struct {
	Device    uint64 `json:"device"`
	JobID     uint64 `json:"job_id"`
	PID       int    `json:"pid"`
	Name      string `json:"name"`
	MemoryMiB uint64 `json:"memory_mib"`
}

// appendIndented appends what json.MarshalIndent(s, "", "  ") returns,
// without reflection and without its second pass, which took half the time
// of a read of status.json; TestStatusJSONEncoding holds them equal.
func (s *statusJSON) appendIndented(b []byte) []byte {
	b = append(b, "{\n"...)
	b = appendJSONString(jsonKey(b, 1, "time"), s.Time)
	b = appendJSONString(jsonKey(jsonNext(b), 1, "smi_version"), s.SMIVersion)
	b = appendJSONString(jsonKey(jsonNext(b), 1, "client_version"), s.ClientVersion)
	b = appendJSONString(jsonKey(jsonNext(b), 1, "server_version"), s.ServerVersion)
	b = appendJSONString(jsonKey(jsonNext(b), 1, "token"), s.Token)
	b = jsonKey(jsonNext(b), 1, "current")
	if s.Current == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendUint(b, *s.Current, 10)
	}
	b = jsonKey(jsonNext(b), 1, "limit")
	b = append(b, "{\n"...)
	b = strconv.AppendInt(jsonKey(b, 2, "max"), int64(s.Limit.Max), 10)
	b = strconv.AppendInt(jsonKey(jsonNext(b), 2, "used"), int64(s.Limit.Used), 10)
	b = jsonClose(b, 1, '}')
	b = jsonKey(jsonNext(b), 1, "devices")
	b = appendJSONList(b, s.Devices, (*deviceJSON).appendIndented)
	b = jsonKey(jsonNext(b), 1, "processes")
	b = appendJSONList(b, s.Processes, (*processJSON).appendIndented)
	return jsonClose(b, 0, '}')
}

// appendJSONList appends a list of objects at depth 1; nil is null.
func appendJSONList[T any](b []byte, list []T, appendElement func(*T, []byte) []byte) []byte {
	switch {
	case list == nil:
		return append(b, "null"...)
	case len(list) == 0:
		return append(b, "[]"...)
	}
	b = append(b, '[')
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendElement(&list[i], b)
	}
	return jsonClose(b, 1, ']')
}

// appendIndented appends the device as an element of a list at depth 1.
func (d *deviceJSON) appendIndented(b []byte) []byte {
	b = append(b, "\n    {\n"...)
	b = strconv.AppendUint(jsonKey(b, 3, "id"), d.ID, 10)
	b = strconv.AppendBool(jsonKey(jsonNext(b), 3, "current"), d.Current)
	b = appendJSONString(jsonKey(jsonNext(b), 3, "name"), d.Name)
	b = appendJSONString(jsonKey(jsonNext(b), 3, "model"), d.Model)
	b = strconv.AppendInt(jsonKey(jsonNext(b), 3, "units"), int64(d.Units), 10)
	b = strconv.AppendUint(jsonKey(jsonNext(b), 3, "memory_used_mib"), d.MemoryUsedMiB, 10)
	b = strconv.AppendUint(jsonKey(jsonNext(b), 3, "memory_total_mib"), d.MemoryTotalMiB, 10)
	b = jsonKey(jsonNext(b), 3, "utilization")
	if d.Utilization == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, int64(*d.Utilization), 10)
	}
	b = appendJSONString(jsonKey(jsonNext(b), 3, "state"), d.State)
	return jsonClose(b, 2, '}')
}

// appendIndented appends the process as an element of a list at depth 1.
func (p *processJSON) appendIndented(b []byte) []byte {
	b = append(b, "\n    {\n"...)
	b = strconv.AppendUint(jsonKey(b, 3, "device"), p.Device, 10)
	b = strconv.AppendUint(jsonKey(jsonNext(b), 3, "job_id"), p.JobID, 10)
	b = strconv.AppendInt(jsonKey(jsonNext(b), 3, "pid"), int64(p.PID), 10)
	b = appendJSONString(jsonKey(jsonNext(b), 3, "name"), p.Name)
	b = strconv.AppendUint(jsonKey(jsonNext(b), 3, "memory_mib"), p.MemoryMiB, 10)
	return jsonClose(b, 2, '}')
}

// jsonIndent is the indentation of every depth that status.json reaches.
const jsonIndent = "        "

// jsonKey starts a field at depth: its indentation and its quoted name
// (names here need no escaping).
func jsonKey(b []byte, depth int, name string) []byte {
	b = append(b, jsonIndent[:2*depth]...)
	b = append(b, '"')
	b = append(b, name...)
	return append(b, "\": "...)
}

// jsonNext ends a value that another field follows.
func jsonNext(b []byte) []byte { return append(b, ",\n"...) }

// jsonClose ends the last value of an object or list whose own line is at depth.
func jsonClose(b []byte, depth int, c byte) []byte {
	b = append(b, '\n')
	b = append(b, jsonIndent[:2*depth]...)
	return append(b, c)
}

// appendJSONString appends s quoted as encoding/json quotes it: printable
// ASCII that needs no escaping is copied, the rest is left to encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(s) // a string always marshals
			return append(b, quoted...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
