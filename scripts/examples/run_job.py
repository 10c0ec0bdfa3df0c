#!/usr/bin/env python3
"""What moreh-run does, with file operations only: run a command as a job of
a moreh device, waiting in morehd's queue until the job holds its GPUs.

    run_job.py DEVICE COMMAND [ARGS...]

Ctrl-C while it waits leaves the queue (the waiting process exits)."""
import os
import sys

root = os.environ.get("MOREH_ROOT", "/moreh")
device, command = sys.argv[1], sys.argv[2:]
dev = os.path.join(root, "devices", device)

# One write is one command: this process becomes a job of the device. The
# write succeeds at once; the job may have to wait in the queue.
with open(os.path.join(dev, "procs"), "w") as f:
    f.write(str(os.getpid()))

# A read of "job" blocks while the job waits (EAGAIN instead with
# O_NONBLOCK) and returns "job N\nstate running\n" once it holds its GPUs.
# A signal interrupts it (EINTR): SIGINT's KeyboardInterrupt ends the wait.
try:
    with open(os.path.join(dev, "job")) as f:
        state = dict(line.split(" ", 1) for line in f.read().splitlines())
except KeyboardInterrupt:
    sys.exit(130)
print("[info] Moreh Job ID:", state["job"], file=sys.stderr, flush=True)

# The bound GPUs, for the command.
with open(os.path.join(dev, "env")) as f:
    env = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
os.execvpe(command[0], command, {**os.environ, **env})
