"""Run one experiment and make sure it dies with the tuner (stdlib only, run as a script).

Usage: ``python -I -S _guard.py ARGV...`` started by nbtune in a new session (so this process leads
its own process group), with standard input connected to a pipe whose write end only the tuner
holds. When the tuner dies in any way, including SIGKILL or a kernel restart, the kernel closes
that pipe: this guard then kills its whole process group, the training script and anything it
spawned. A parent-death signal (``PR_SET_PDEATHSIG``) would not do: it fires when the *thread*
that started the child exits, and it needs ``preexec_fn``, which is unsafe with threads.

The guard exits with the script's exit code (``128 + N`` when the script died of signal N).
"""

import os
import signal
import subprocess
import sys
import threading


def _kill_group_when_parent_dies() -> None:
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    os.killpg(0, signal.SIGKILL)


def main() -> int:
    argv = sys.argv[1:]
    if not argv:
        print("usage: _guard.py ARGV...", file=sys.stderr)
        return 2
    # The tuner stops an experiment by signalling the whole group: stay alive to reap the script.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watcher = threading.Thread(target=_kill_group_when_parent_dies, daemon=True)
    watcher.start()
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"nbtune: cannot start {argv[0]!r}: {exc}", file=sys.stderr)
        return 127
    code = child.wait()
    # Processes the script left behind (vector-env workers, shells) go with it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
