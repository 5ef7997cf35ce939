"""`actlab inspect CHECKPOINT`: what a checkpoint file holds, without trusting it.

For people who share checkpoint files: the file is read with `weights_only=True` (no pickle
code runs), checked like a resume would check it (format, version, model config, weight
shapes, finite weights), and summarised: the model, where training stood, the metrics of
the newest epoch, the recipe, and whether `actlab run --resume` could continue from it.
Any problem is one `CheckpointError` line (the CLI prints it and exits 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: what `--resume` needs beyond a loadable model
RESUME_KEYS = ("progress", "optimizer", "rng", "lab_config")


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's `checkpoints/last.pt`."""
    from actlab.engine import runs

    path = Path(path)
    if path.is_dir() and (path / runs.CHECKPOINT_DIR).is_dir():
        return runs.checkpoint_path(path, runs.LAST)
    return path


def summary(path: str | Path) -> dict[str, Any]:
    """The checkpoint's facts as plain values (JSON-able); raises CheckpointError."""
    from actlab.engine.checkpoints import load_checkpoint
    from actlab.engine.errors import CheckpointError
    from actlab.engine.model import count_parameters

    path = checkpoint_file(path)
    model, data = load_checkpoint(path)
    progress = data.get("progress") if isinstance(data.get("progress"), dict) else {}
    lab = data.get("lab_config") if isinstance(data.get("lab_config"), dict) else {}
    missing = [k for k in RESUME_KEYS if k not in data]
    try:
        return _facts(path, model, data, progress, lab, missing, count_parameters(model))
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: odd values in the checkpoint ({type(exc).__name__}: {exc})") from None


def _facts(path: Path, model: Any, data: dict, progress: dict, lab: dict, missing: list[str],
           parameters: int) -> dict[str, Any]:
    m = model.config
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "format_version": data["format_version"],
        "run_id": str(data.get("run_id", "")),
        "model": {"input_size": m.input_size, "hidden_sizes": list(m.hidden_sizes), "num_classes": m.num_classes,
                  "activation": m.activation, "activation_config": dict(m.activation_config),
                  "dropout": m.dropout, "parameters": parameters},
        "epoch": int(data["epoch"]),
        "batch": int(progress.get("batch", 0) or 0),
        "step": int(data["step"]),
        "best_val_acc": float(progress["best_val_acc"]) if "best_val_acc" in progress else None,
        "best_epoch": int(progress["best_epoch"]) if "best_epoch" in progress else None,
        "metrics": {k: float(v) for k, v in (data.get("metrics") or {}).items()},
        "config": {section: dict(values) for section, values in lab.items() if isinstance(values, dict)},
        "resumable": not missing,
        "missing_for_resume": missing,
    }


def print_to_pipe(text: str) -> None:
    """Print `text` to stdout; a reader that went away (`actlab inspect F | head -3`) is fine.

    After a broken pipe, stdout is pointed at /dev/null so that Python's own flush at exit
    finds nothing to complain about (no BrokenPipeError traceback, exit code unchanged).
    """
    import os
    import sys

    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def describe(path: str | Path) -> list[str]:
    """The summary as lines for a terminal."""
    s = summary(path)
    m = s["model"]
    shape = "-".join(str(n) for n in (m["input_size"], *m["hidden_sizes"], m["num_classes"]))
    act = m["activation"] + (f" {json.dumps(m['activation_config'])}" if m["activation_config"] else "")
    lines = [f"checkpoint {s['path']} (actlab format {s['format_version']}, {s['bytes'] / 1024:.0f} KiB)"]
    if s["run_id"]:
        lines.append(f"run        {s['run_id']}")
    lines.append(f"model      {act} MLP {shape}, {m['parameters']:,} parameters"
                 + (f", dropout {m['dropout']}" if m["dropout"] else ""))
    where = f"epoch {s['epoch']} done" + (f", {s['batch']} batches into epoch {s['epoch'] + 1}" if s["batch"] else "")
    lines.append(f"progress   {where}, step {s['step']}")
    mt = s["metrics"]
    shown = [f"{label} {mt[key] * 100:.2f}%" if key.endswith("acc") else f"{label} {mt[key]:.4f}"
             for key, label in (("train_loss", "train loss"), ("train_acc", "train acc"), ("val_loss", "val loss"),
                                ("val_acc", "val acc")) if key in mt]
    if shown:
        lines.append(f"metrics    {', '.join(shown)} (epoch {s['epoch']})")
    if s["best_epoch"]:
        lines.append(f"best       val acc {float(s['best_val_acc']) * 100:.2f}% at epoch {s['best_epoch']}")
    c = s["config"]
    if c:
        d, t, r = c.get("data", {}), c.get("train", {}), c.get("run", {})
        recipe = (f"{d.get('dataset', '?')}, {t.get('optimizer', '?')} lr {t.get('lr', '?')}"
                  + (f" momentum {t.get('momentum')}" if t.get("optimizer") == "sgd" else "")
                  + f", batch {t.get('batch_size', '?')}, {t.get('epochs', '?')} epochs, "
                    f"patience {t.get('patience', '?')}, seed {r.get('seed', '?')}")
        lines.append(f"recipe     {recipe}")
    lines.append("resumable  yes" if s["resumable"] else
                 f"resumable  no (weights only: no {', '.join(s['missing_for_resume'])})")
    from actlab.engine.errors import printable

    return [printable(line) for line in lines]  # names from the file never reach the terminal raw
