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
// Where clock is not nil (every one of procs is counted by it), a sample
// that finds it unchanged keeps the last names: none of them exec'd.
func (s *Sampler) NameProcesses(procs []ProcID, clock JobsClock) {
	s.named.Store(&namedProcs{procs: procs, clock: clock})
}

// namedProcs is what NameProcesses gave.
type namedProcs struct {
	procs []ProcID
	clock JobsClock
}

// namesRead is what the sampler's last reading of names found.
type namesRead struct {
	of    *namedProcs
	usec  uint64 // of's clock before the reading
	names map[int]procName
}

// readNames reads the names of the processes NameProcesses gave; those gone are
// left out.
func (s *Sampler) readNames() map[int]procName {
	named := s.named.Load()
	if named == nil {
		return nil
	}
	var usec uint64
	ok := false
	if named.clock != nil {
		usec, ok = named.clock()
	}
	s.namesMu.Lock()
	defer s.namesMu.Unlock()
	if last := s.lastNames; ok && last.of == named && last.usec == usec {
		return last.names // a snapshot's names are never written: shared as they are
	}
	names := make(map[int]procName, len(named.procs))
	for _, p := range named.procs {
		if info, err := s.procs.Read(p.PID); err == nil && info.Start == p.Start {
			names[p.PID] = procName{start: info.Start, comm: info.Comm}
		}
	}
	s.lastNames = namesRead{}
	if ok {
		s.lastNames = namesRead{of: named, usec: usec, names: names}
	}
	return names
}
