package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC) morehd says READY=1, pings
// WATCHDOG=1 while it serves, and says STOPPING=1 when it stops, after
// which it pings no more.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "100000") // a ping every 50 ms
	t.Setenv("WATCHDOG_PID", "")        // not set for another process
	states := make(chan string, 1000)
	go func() {
		defer close(states)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			states <- string(buf[:n])
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case s := <-states:
			return s
		case <-time.After(time.Minute): // a bound on a hang, never reached when it works
			t.Fatalf("no %s from morehd", what)
			return ""
		}
	}
	d := morehdtest.Start(t)
	if s := next("READY=1"); s != "READY=1" {
		t.Fatalf("the first notification is %q, want READY=1", s)
	}
	for i := 0; i < 3; i++ {
		if s := next("WATCHDOG=1"); s != "WATCHDOG=1" {
			t.Fatalf("notification %q while serving, want WATCHDOG=1", s)
		}
	}
	d.Stop()
	for {
		s := next("STOPPING=1")
		if s == "STOPPING=1" {
			break
		}
		if s != "WATCHDOG=1" {
			t.Fatalf("notification %q before STOPPING=1", s)
		}
	}
	// morehd has exited; a datagram of ours queues after all it sent.
	end, err := net.Dial("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	end.Write([]byte("END"))
	end.Close()
	for s := next("the test's END"); s != "END"; s = next("the test's END") {
		t.Errorf("after STOPPING=1 morehd sent %q", s)
	}
	if !strings.Contains(d.Log(), "systemd watchdog") {
		t.Errorf("the log does not name the watchdog:\n%s", d.Log())
	}
}

// The watchdog pings only while the check answers; a hung check stops the
// pings, and the loop ends with its context even while a check hangs.
func TestWatchdogStopsPingingAHungTree(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var mu sync.Mutex
	pings, hang, checks := 0, make(chan struct{}), 0
	healthy := make(chan struct{})
	alive := func(time.Duration) error {
		mu.Lock()
		checks++
		n := checks
		mu.Unlock()
		switch {
		case n <= 3:
			return nil
		case n == 4:
			close(healthy)
			<-hang // the tree stops answering
			return errors.New("hung")
		}
		return nil
	}
	notify := func(s string) {
		if s != "WATCHDOG=1" {
			t.Errorf("notify(%q)", s)
		}
		mu.Lock()
		pings++
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { watchdog(ctx, time.Millisecond, alive, notify, log); close(done) }()
	<-healthy
	// The check hangs: some ticks pass, and no ping, no second check.
	morehdtest.Throughout(t, 50*time.Millisecond, "3 pings and 4 checks while the 4th check hangs", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return pings == 3 && checks == 4
	})
	cancel()
	<-done // ends although the check still hangs
	close(hang)
}
