"""A fork server for the process-level robustness tests (kill -9, signals, resume).

Starting `actlab` costs seconds of imports (torch, torch._dynamo, scikit-learn) before the
first batch; the kill tests need dozens of training processes. This script imports all of
that once, then forks one child per request; each child is a fresh process that runs the
real command line, `actlab.tui.cli.main(argv)`, with its own stdout/stderr file, cwd and
signal handlers, and exits with the command's exit code. The test kills children by pid.

Protocol: one JSON object per line on stdin, one reply per line on stdout.
  {"op": "start", "argv": [...], "cwd": DIR, "log": FILE, "pause_at_step": K, "ready": F, "go": F}
      -> {"pid": PID}. With pause_at_step, the child stops inside its printer after global
      step K, touches `ready`, and waits for `go` (the test sends its signal in between).
  {"op": "wait", "pid": PID, "timeout": S} -> {"code": exit code, -N for signal N, or null}
  {"op": "quit"}
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sklearn.datasets  # noqa: E402,F401  (digits)
import torch  # noqa: E402,F401
import torch._dynamo  # noqa: E402,F401  (the optimizers import it on first use: seconds)

import actlab.engine.data  # noqa: E402,F401
import actlab.engine.probes  # noqa: E402,F401
import actlab.engine.training  # noqa: E402,F401
import actlab.tui.checkpoint_info  # noqa: E402,F401
import actlab.tui.headless  # noqa: E402
from actlab.engine.events import BatchProgress  # noqa: E402
from actlab.tui import cli  # noqa: E402


def _pause_hook(step: int, ready: str, go: str) -> None:
    """Make the child wait inside its printer after `step`, so a signal lands mid-epoch."""
    printer = actlab.tui.headless.HeadlessPrinter
    original = printer.__call__

    def call(self, event):
        original(self, event)
        if isinstance(event, BatchProgress) and event.global_step == step:
            open(ready, "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.002)

    printer.__call__ = call


def _child(request: dict) -> None:
    code = 70
    try:
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(request["cwd"])
        if request.get("pause_at_step"):
            _pause_hook(int(request["pause_at_step"]), request["ready"], request["go"])
        code = cli.main(request["argv"])
    except SystemExit as exc:  # a second signal exits at once with 128+N
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.005)


def main() -> None:
    out = sys.stdout
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            out.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            reply = {"pid": pid}
        elif request["op"] == "wait":
            reply = {"code": _wait(int(request["pid"]), float(request.get("timeout", 60)))}
        else:
            break
        print(json.dumps(reply), file=out, flush=True)


if __name__ == "__main__":
    main()
