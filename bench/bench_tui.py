"""Benchmark of the live app, run as a user runs it: `actlab` in a pseudo-terminal.

Measures, on the screen the process writes (ANSI codes stripped):

- time to first frame: from just before the process is spawned until the header's
  "epoch 0/N" appears (the app paints before PyTorch has loaded); median of --starts runs;
- keypress-to-screen latency while training runs on every core: a key is written to the
  terminal and the clock stops when the screen shows its effect. `o` (the leaderboard's sort
  label changes) and `space` (the header shows "pausing…" / "resuming…" at once) measure the
  UI; the engine's acknowledgement ("⏸ paused" / "▶ running", applied between batches) is
  reported separately;
- `q` to process exit, mid-epoch (the run stops after its batch and writes a checkpoint);
- the bytes per second the screen costs while training (what an SSH link carries).

Training data: FashionMNIST from ACTLAB_DATA or ../shared/datasets when present (the lab's
default MLP, about 5-10 s per epoch on 2 CPU cores), else the offline digits set with a
wider MLP so the run stays busy. Results go to bench/results/tui-<time>.json; the last line
printed is the headline.

    python bench/bench_tui.py [--samples 20] [--starts 3] [--size 120x40] [--baseline DIR]

With `--baseline DIR` (a folder holding an `actlab` package of another version, e.g. a
`git archive` of engine/ and tui/ linked as DIR/actlab/engine and DIR/actlab/tui), the
first-frame starts alternate between this tree and that one (PYTHONPATH=DIR), and both
medians and their ratio are printed: the fair comparison on a machine whose load moves.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[PX^_][^\x1b]*\x1b\\|\x1b[@-Z\\-_]")
SORT_NAMES = ("run order", "best val acc", "test acc", "peak dead", "seconds per epoch")


class Terminal:
    """`actlab` in a pseudo-terminal of a given size, its output collected by a reader thread."""

    def __init__(self, cwd: Path, env: dict[str, str], size: tuple[int, int]) -> None:
        master, slave = os.openpty()
        cols, rows = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.master = master
        self.output = bytearray()
        self.lock = threading.Lock()
        self.started = time.perf_counter()

        def controlling_tty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([sys.executable, "-m", "actlab.tui.cli"], stdin=slave, stdout=slave,
                                     stderr=slave, cwd=cwd, env=env, preexec_fn=controlling_tty, close_fds=True)
        os.close(slave)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if not ready:
                    if self.proc.poll() is not None:
                        return
                    continue
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.output += data

    def mark(self) -> int:
        with self.lock:
            return len(self.output)

    def text_since(self, offset: int) -> str:
        with self.lock:
            raw = bytes(self.output[offset:])
        return ANSI.sub(b"", raw).decode("utf-8", errors="replace")

    def wait_for(self, marker: str, offset: int, timeout: float) -> float | None:
        """perf_counter time at which `marker` showed after `offset`, or None on timeout."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if marker in self.text_since(offset):
                return time.perf_counter()
            time.sleep(0.001)
        return None

    def press(self, key: bytes) -> tuple[int, float]:
        offset = self.mark()
        os.write(self.master, key)
        return offset, time.perf_counter()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        try:
            os.close(self.master)
        except OSError:
            pass


def lab_toml(folder: Path) -> tuple[str, str]:
    """Write the benchmark's lab.toml; (dataset, why)."""
    source = os.environ.get("ACTLAB_DATA") or str(REPO.parent / "shared" / "datasets")
    if (Path(source) / "FashionMNIST" / "raw").is_dir():
        data = f'dataset = "fashion-mnist"\nsource = "{source}"\nfallback = "none"'
        hidden, dataset = "[512, 256, 256, 128]", "fashion-mnist"
    else:
        data = 'dataset = "digits"'
        hidden, dataset = "[1024, 1024, 512]", "digits"
    (folder / "lab.toml").write_text(f"""[run]
runs_dir = "{folder / 'runs'}"
device = "cpu"
[data]
{data}
[model]
hidden_sizes = {hidden}
[train]
epochs = 50
patience = 0
""")
    return dataset, source


def headline(result: dict) -> str:
    """The last line printed: the saved figures against their targets."""
    keys = sum(len(values) for values in result["keypress_ui_ms"].values())
    return (f"first frame {result['first_frame_median_s'] * 1000:.0f} ms (target < 1000); keypress-to-screen "
            f"p95 {result['keypress_ui_p95_ms']:.0f} ms (target < 100) over {keys} keys while training "
            f"{result['dataset']}; engine ack p95 {result['engine_ack_p95_ms']:.0f} ms; "
            f"q exits in {result['quit_to_exit_s']:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="rounds of keypresses (3 UI samples each)")
    parser.add_argument("--starts", type=int, default=3, help="app starts timed for the first frame")
    parser.add_argument("--size", default="120x40", help="terminal size COLSxROWS")
    parser.add_argument("--baseline", metavar="DIR", help="also time first frames of the actlab package in DIR, "
                                                        "alternating with this tree's")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="actlab-bench-tui-"))
    dataset, source = lab_toml(work)
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TEXTUAL", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    print(f"actlab TUI benchmark: {dataset}, terminal {size[0]}x{size[1]}, {os.cpu_count()} CPUs, in {work}")

    # -- time to first frame -------------------------------------------------------------
    first_frames = []
    baseline_frames: list[float] = []
    for i in range(args.starts):
        order = [("this", env)]
        if args.baseline:
            order.append(("baseline", {**env, "PYTHONPATH": args.baseline}))
            order = order if i % 2 == 0 else order[::-1]
        for which, start_env in order:
            term = Terminal(work, start_env, size)
            shown = term.wait_for("epoch 0/50", 0, timeout=30)
            if shown is None:
                print("first frame never appeared; output tail:\n" + term.text_since(0)[-2000:])
                term.close()
                return 1
            (first_frames if which == "this" else baseline_frames).append(shown - term.started)
            term.press(b"q")
            try:
                term.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            term.close()
            print(f"  start {i + 1} ({which}): first frame after {(shown - term.started) * 1000:.0f} ms")
    if baseline_frames:
        ratio = statistics.median(first_frames) / statistics.median(baseline_frames)
        print(f"  first frame median: this {statistics.median(first_frames) * 1000:.0f} ms, baseline "
              f"{statistics.median(baseline_frames) * 1000:.0f} ms ({ratio:.2f}x), load {os.getloadavg()[0]:.1f}")

    # -- keypress latency while training --------------------------------------------------
    term = Terminal(work, env, size)
    print("  waiting for training to run (PyTorch import, data load)...")
    if term.wait_for("▶ running", 0, timeout=180) is None or term.wait_for("epoch 1 ", 0, timeout=60) is None:
        print("training never started; output tail:\n" + term.text_since(0)[-3000:])
        term.close()
        return 1
    time.sleep(2.0)
    offset, t0 = term.mark(), time.perf_counter()
    time.sleep(5.0)
    bytes_per_s = (term.mark() - offset) / (time.perf_counter() - t0)

    ui: dict[str, list[float]] = {"o (sort)": [], "space (pausing…)": [], "space (resuming…)": []}
    ack: dict[str, list[float]] = {"paused": [], "running": []}
    misses = 0
    sort = 0
    for _ in range(args.samples):
        sort = (sort + 1) % len(SORT_NAMES)
        offset, pressed = term.press(b"o")
        seen = term.wait_for(f"sorted by {SORT_NAMES[sort]}", offset, timeout=5)
        if seen is None:
            misses += 1
        else:
            ui["o (sort)"].append(seen - pressed)
        time.sleep(0.15)
        for key_label, pending, state, glyph in (("space (pausing…)", "pausing…", "paused", "⏸"),
                                                 ("space (resuming…)", "resuming…", "running", "▶")):
            offset, pressed = term.press(b" ")
            seen = term.wait_for(pending, offset, timeout=5)
            acked = term.wait_for(f"{glyph} {state}", offset, timeout=10)
            if seen is None:
                misses += 1
            else:
                ui[key_label].append(seen - pressed)
            if acked is not None:
                ack[state].append(acked - pressed)
            time.sleep(0.2 + 0.3 * ((len(ui["o (sort)"]) * 7) % 10) / 10)

    # -- quit, mid-epoch --------------------------------------------------------------------
    time.sleep(1.0)
    _, pressed = term.press(b"q")
    try:
        term.proc.wait(10)
        quit_s = time.perf_counter() - pressed
    except subprocess.TimeoutExpired:
        quit_s = float("nan")
    exit_code = term.proc.returncode
    tail = term.text_since(0)[-400:]
    term.close()
    runs = sorted((work / "runs").glob("*/checkpoints/last.pt"))
    from actlab.engine.benchmark import quantile, save_results  # after the timing: torch loads slowly

    all_ui = [v for values in ui.values() for v in values]
    all_ack = [v for values in ack.values() for v in values]
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "dataset": dataset, "terminal": list(size),
        "first_frame_s": first_frames, "first_frame_median_s": statistics.median(first_frames),
        "baseline_first_frame_s": baseline_frames,
        "keypress_ui_ms": {k: [round(v * 1000, 2) for v in vals] for k, vals in ui.items()},
        "keypress_ui_p50_ms": quantile(all_ui, 0.5) * 1000, "keypress_ui_p95_ms": quantile(all_ui, 0.95) * 1000,
        "keypress_ui_max_ms": max(all_ui, default=float("nan")) * 1000,
        "engine_ack_ms": {k: [round(v * 1000, 2) for v in vals] for k, vals in ack.items()},
        "engine_ack_p95_ms": quantile(all_ack, 0.95) * 1000,
        "missed_keys": misses,
        "screen_bytes_per_s_training": bytes_per_s,
        "quit_to_exit_s": quit_s, "quit_exit_code": exit_code, "checkpoints_after_quit": len(runs),
    }
    out = save_results(RESULTS, "tui", result)

    for label, values in ui.items():
        if values:
            print(f"  {label:<20} n={len(values):>3}  p50 {quantile(values, .5) * 1000:6.1f} ms  "
                  f"p95 {quantile(values, .95) * 1000:6.1f} ms  max {max(values) * 1000:6.1f} ms")
    for label, values in ack.items():
        if values:
            print(f"  engine ack {label:<9} n={len(values):>3}  p50 {quantile(values, .5) * 1000:6.1f} ms  "
                  f"p95 {quantile(values, .95) * 1000:6.1f} ms")
    print(f"  screen output while training: {bytes_per_s / 1024:.1f} KiB/s; missed keys: {misses}")
    print(f"  q -> exit {quit_s:.2f} s (exit code {exit_code}), checkpoints written: {len(runs)}")
    if exit_code is None or quit_s != quit_s:
        print("  output tail: " + tail)
    print(f"  results: {out.relative_to(REPO)}")
    print(headline(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
