"""Write the bad-checkpoint corpus beside this script, and index.json describing it.

    python tests/corpus/checkpoints/make_corpus.py

Every file is something a user could be handed or left with: empty, cut short, not a
PyTorch file at all, another program's checkpoint, a newer actlab's, one whose weights do
not fit its own model config, NaN weights, or a pickle that runs code when loaded unsafely.
The code in the two pickle files is harmless on purpose: it would create an empty file
named `actlab-corpus-pwned` in the current folder, which the tests assert never appears.

index.json lists, per file: what `actlab inspect FILE` must say (`expect`, or `inspect_ok`
when the file is a fine checkpoint that only `--resume` must refuse) and what
`actlab run --resume RUN` must say with that file as the run's last.pt (`resume_expect`,
default `expect`). The resume run is a digits run (64 inputs, 10 classes) with hidden
sizes [16].
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import torch

from actlab.engine.checkpoints import FORMAT, FORMAT_VERSION
from actlab.engine.model import MLPConfig, build_model

HERE = Path(__file__).resolve().parent
MARKER = "actlab-corpus-pwned"


class Payload:
    """Unpickled without weights_only, this calls open(MARKER, "w"): an empty file appears."""

    def __reduce__(self):
        return (open, (MARKER, "w"))


def checkpoint(config: MLPConfig | None = None, **changes) -> dict:
    """A well-formed actlab checkpoint of a digits model, with `changes` applied."""
    config = config or MLPConfig(input_size=64, num_classes=10, hidden_sizes=(16,))
    model = build_model(config, seed=0)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "run_id": "corpus", "model_config": config.to_dict(),
            "model_state": model.state_dict(), "epoch": 2, "step": 66, "metrics": {"val_acc": 0.9}}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def main() -> None:
    good = saved(checkpoint())
    cases: list[tuple[str, bytes, dict]] = []

    def add(name: str, content: bytes, **expect) -> None:
        cases.append((name, content, expect))

    add("empty.pt", b"", expect="empty file, not a checkpoint")
    add("truncated-half.pt", good[: len(good) // 2], expect="truncated (the file ends before its zip directory")
    add("truncated-end.pt", good[:-40], expect="truncated (the file ends before its zip directory")
    add("random-bytes.pt", bytes((i * 97 + 13) % 256 for i in range(4096)), expect="not a PyTorch checkpoint file")
    add("corrupt-pickle.pt", b"\x80\x02" + bytes((i * 31 + 7) % 256 for i in range(512)),
        expect="corrupt checkpoint (bad pickle data")
    add("text-file.pt", b'{"model": "not a checkpoint, a JSON file renamed .pt"}\n',
        expect="not a PyTorch checkpoint file (it starts with text)")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("notes.txt", "a zip archive, but not a PyTorch one")
    add("zip-not-torch.pt", zipped.getvalue(), expect="a zip archive, but not a PyTorch checkpoint")
    add("foreign-state-dict.pt", saved(build_model(MLPConfig(input_size=64, hidden_sizes=(16,)), seed=0).state_dict()),
        expect="not an actlab checkpoint (no 'actlab-checkpoint' format tag)")
    add("foreign-list.pt", saved([torch.zeros(3), torch.ones(2)]), expect="not an actlab checkpoint")
    add("newer-format.pt", saved(checkpoint(format_version=FORMAT_VERSION + 1)),
        expect=f"written by a newer actlab (format {FORMAT_VERSION + 1}; this version reads up to {FORMAT_VERSION})")
    add("bad-format-version.pt", saved(checkpoint(format_version="one")), expect="bad format version 'one'")
    add("missing-model-state.pt", saved({k: v for k, v in checkpoint().items() if k != "model_state"}),
        expect="incomplete actlab checkpoint (missing model_state)")
    add("state-not-a-dict.pt", saved(checkpoint(model_state=torch.zeros(4))), expect="model_state is not a state dict")
    add("shape-mismatch.pt", saved(checkpoint(model_config=MLPConfig(input_size=64, hidden_sizes=(20,)).to_dict())),
        expect="weights do not fit the model: layers.fc1.weight has shape (16, 64), the model needs (20, 64)")
    state = checkpoint()["model_state"]
    del state["layers.out.bias"]
    add("missing-weight.pt", saved(checkpoint(model_state=state)),
        expect="weights do not fit the model (missing ['layers.out.bias']")
    add("unknown-activation.pt", saved(checkpoint(model_config={**MLPConfig(input_size=64, hidden_sizes=(16,)).to_dict(),
                                                                "activation": "relux"})),
        expect="bad model config in checkpoint")
    state = checkpoint()["model_state"]
    state["layers.fc1.weight"][3, 5] = float("nan")
    add("nan-weights.pt", saved(checkpoint(model_state=state)),
        expect="weights hold NaN or inf values (layers.fc1.weight)")
    add("other-dataset.pt", saved(checkpoint(config=MLPConfig(input_size=784, hidden_sizes=(16,)))), inspect_ok=True,
        resume_expect="the checkpoint's model takes 784 inputs and 10 classes, but the run's dataset digits has "
                      "64 inputs and 10 classes")
    add("weights-only.pt", saved(checkpoint()), inspect_ok=True,
        resume_expect="cannot resume from this checkpoint ('progress')")
    add("pickle-exploit.pt", pickle.dumps(Payload(), protocol=2),
        expect="refused: the file holds Python code or objects (io.open)")
    add("pickle-exploit-in-zip.pt", saved(checkpoint(extra=Payload())),
        expect="refused: the file holds Python code or objects (io.open)")

    index = []
    for name, content, expect in cases:
        (HERE / name).write_bytes(content)
        index.append({"file": name, **expect})
    (HERE / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"{len(cases)} files in {HERE}")


if __name__ == "__main__":
    main()
