package gpu

// procName is a process's name as a sample read it, with its start: a
// later process that reuses the pid is another process.
type procName struct {
	start uint64
	comm  string
}

// ProcessName is p's name as the snapshot's sample read it, after its
// figures; false when that sample did not name p (attached since, or not a
// process of the jobs NameProcesses gave).
func (s *Snapshot) ProcessName(p ProcID) (string, bool) {
	n, ok := s.names[p.PID]
	if !ok || n.start != p.Start {
		return "", false
	}
	return n.comm, true
}

// NameProcesses tells the sampler whose names each sample reads (the
// processes of this node's jobs), so that rendering a table reads no /proc.
func (s *Sampler) NameProcesses(procs []ProcID) {
	s.named.Store(&procs)
}

// readNames reads the names of the processes NameProcesses gave; those gone are
// left out.
func (s *Sampler) readNames() map[int]procName {
	procs := s.named.Load()
	if procs == nil {
		return nil
	}
	names := make(map[int]procName, len(*procs))
	for _, p := range *procs {
		if info, err := s.procs.Read(p.PID); err == nil && info.Start == p.Start {
			names[p.PID] = procName{start: info.Start, comm: info.Comm}
		}
	}
	return names
}
