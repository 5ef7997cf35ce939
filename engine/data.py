"""Datasets as whole tensors on the device: FashionMNIST, MNIST, sklearn digits, 2-D blobs.

`load_dataset` returns a `DataSplits`: train / validation / test tensors, flattened to
(N, D) float32 and normalised, labels (N,) int64, all already on the requested device.
The training loop indexes these tensors directly; there is no DataLoader and no
per-sample Python transform anywhere.

Where the files come from (fashion-mnist / mnist):

1. `source` (lab.toml `data.source`, else the env var `ACTLAB_DATA`): a folder of the four
   original `.gz` files, taken as `<source>/`, `<source>/raw/` or `<source>/<Class>/raw/`
   (so `ACTLAB_DATA=../shared/datasets` serves both datasets). The folder is only read:
   the files are checked against the datasets' published MD5s, copied into the cache and
   extracted there. A missing or corrupt source is a `DataError`, never a silent fallback.
2. Otherwise the cache (`cache_dir`, default `default_cache_dir()`), laid out as
   torchvision expects: `<cache>/<Class>/raw/`.
3. Otherwise a torchvision download into the cache (if `download`), with a short socket
   timeout so that an offline machine fails in seconds. torchvision is imported for this
   only (importing its datasets costs over a second of CPU).
4. Otherwise, with `fallback="digits"`, the scikit-learn digits (shipped with sklearn, so
   always offline) and a one-line `note` saying why; with `fallback="none"` a `DataError`.

Decoding the raw files (gunzip, then the IDX format) happens once: the decoded uint8
tensors are saved beside them (`<cache>/<Class>/decoded.pt`) with the MD5 of every file they
came from. A later load hashes the files again (a few hundredths of a second) and uses the
saved tensors only when every MD5 matches; a changed file is decoded again, and an
unreadable or foreign decoded file is replaced, never an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import gzip
import hashlib
import io
import math
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .device import resolve_device
from .errors import DataError

if TYPE_CHECKING:
    from .config import LabConfig

DATASET_NAMES = ("fashion-mnist", "mnist", "digits", "blobs")
NORMALIZATIONS = ("dataset", "half")  # the train split's own mean/std, or fixed (0.5, 0.5)
FALLBACKS = ("digits", "none")

DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation while downloading
BLOBS_PER_CLASS = 40  # reference section 4: 40 points per cloud, means -1 / +1, std 0.5
BLOBS_STD = 0.5
_DIGITS_TEST_SEED = 0  # the digits test split is fixed, like the MNIST test sets

#: the four files of each IDX dataset with their published MD5s (torchvision's `resources`),
#: and the folder name torchvision gives the dataset in a cache
IDX_FILES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "fashion-mnist": ("FashionMNIST", (
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"))),
    "mnist": ("MNIST", (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"))),
}
DECODED_FILE = "decoded.pt"
DECODED_FORMAT = "actlab-decoded-idx-1"


@dataclass(frozen=True, eq=False)
class DataSplits:
    """Train / validation / test tensors of one dataset, ready for the model."""

    name: str  # the dataset really used (differs from the request after a fallback)
    train_x: torch.Tensor = field(repr=False)  # (N, D) float32, normalised, flattened
    train_y: torch.Tensor = field(repr=False)  # (N,) int64 class indices
    val_x: torch.Tensor = field(repr=False)
    val_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    input_shape: tuple[int, ...]  # one sample before flattening: (1, 28, 28), (1, 8, 8), (2,)
    num_classes: int
    mean: float  # normalisation used: x = (raw - mean) / std, raw in [0, 1] for images
    std: float
    note: str = ""  # one line for the user, e.g. why a fallback dataset is used

    @property
    def input_size(self) -> int:
        """Features per flattened sample (D)."""
        return math.prod(self.input_shape)

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(train, validation, test) sample counts."""
        return len(self.train_y), len(self.val_y), len(self.test_y)


def default_cache_dir() -> Path:
    """Folder for downloaded and extracted datasets.

    `$ACTLAB_CACHE/datasets` when the env var `ACTLAB_CACHE` (actlab's cache root) is set,
    else `<user cache dir>/actlab/datasets` from platformdirs.
    """
    root = os.environ.get("ACTLAB_CACHE")
    if root:
        return Path(root).expanduser() / "datasets"
    import platformdirs

    return Path(platformdirs.user_cache_dir("actlab", appauthor=False)) / "datasets"


def load_dataset(
    name: str,
    *,
    device: str | torch.device = "cpu",
    seed: int = 42,
    val_size: int = 10000,
    normalization: str = "dataset",
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    fallback: str = "digits",
    download: bool = True,
) -> DataSplits:
    """Load a dataset as normalised device tensors split into train / val / test.

    Splits, all determined by `seed` (a `torch.Generator`, independent of the global RNG):

    - fashion-mnist, mnist: the 60,000 training images are permuted; the first `val_size`
      (1 <= val_size < 60000) become validation, the rest training (default 50,000 /
      10,000). The 10,000 test images are the official test set.
    - digits (1,797 images of 8x8, pixel values 0..16 scaled by 1/16): a fixed 20% test
      split (359, the same for every seed), then `min(val_size, 359)` validation samples
      drawn by `seed`; the rest train (1,079 / 359 / 359 with the default val_size).
    - blobs: two 2-D Gaussian clouds, means (-1, -1) and (+1, +1), std 0.5, 40 points each
      per split, so train, val and test each hold 80 fresh points drawn from `seed`;
      `val_size` is ignored.

    normalization "dataset" uses the mean and std of all training-split values (after the
    split; FashionMNIST gives about 0.2860 / 0.3530); "half" uses (0.5, 0.5). The same
    numbers are applied to all three splits and recorded in the result.

    Raises `DataError` for an unknown name or option, an unusable `source` folder (missing
    or corrupt files), or an unavailable dataset when `fallback="none"`.
    """
    key = _canonical_name(name)
    if normalization not in NORMALIZATIONS:
        raise DataError(f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}")
    if fallback not in FALLBACKS:
        raise DataError(f"unknown data fallback {fallback!r}; valid: {', '.join(FALLBACKS)}")
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 1:
        raise DataError(f"val_size must be a positive integer, got {val_size!r}")
    device = torch.device(device)

    if key == "digits":
        return _load_digits(device, seed, val_size, normalization)
    if key == "blobs":
        return _load_blobs(device, seed, normalization)

    if source is None:
        source = os.environ.get("ACTLAB_DATA") or None
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        images, labels, test_images, test_labels = _idx_tensors(key, root, source, download)
    except _Unavailable as exc:
        if fallback == "none":
            raise DataError(f"{key} unavailable: {exc}") from None
        splits = _load_digits(device, seed, val_size, normalization)
        note = f"{key} unavailable ({exc}); using digits"
        return dataclasses.replace(splits, note=note)

    n_train = len(labels)
    if val_size >= n_train:
        raise DataError(f"val_size {val_size} leaves no training data ({key} has {n_train} training images)")
    perm = torch.randperm(n_train, generator=_generator(seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    # split the uint8 pixels (a quarter of the float bytes to move), then convert each split once
    train_pixels = images[train_idx]
    moments = _pixel_moments(train_pixels, 255.0) if normalization == "dataset" else None
    y = labels.to(torch.int64)
    return _finish(
        key, _to_device_flat(train_pixels, device, 255.0), y[train_idx].to(device),
        _to_device_flat(images[val_idx], device, 255.0), y[val_idx].to(device),
        _to_device_flat(test_images, device, 255.0), test_labels.to(device=device, dtype=torch.int64),
        input_shape=(1, 28, 28), num_classes=10, normalization=normalization, moments=moments,
    )


# --- internals ---------------------------------------------------------------------------


class _Unavailable(Exception):
    """The dataset is neither cached nor obtainable; the message says why (one line)."""


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key in DATASET_NAMES:
        return key
    close = difflib.get_close_matches(key, DATASET_NAMES, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DataError(f"unknown dataset {name!r}{hint}; valid: {', '.join(DATASET_NAMES)}")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _pixel_moments(pixels: torch.Tensor, scale: float) -> tuple[float, float]:
    """(mean, std) of `pixels / scale` over all values of a uint8 tensor, from its histogram of
    256 counts: exact (float64 over the float32 values the model sees) and far cheaper than a
    pass over the float tensor."""
    counts = torch.bincount(pixels.reshape(-1), minlength=256).to(torch.float64)
    values = (torch.arange(256, dtype=torch.float32) / scale).to(torch.float64)
    n = counts.sum()
    mean = (counts * values).sum() / n
    var = (counts * (values - mean) ** 2).sum() / n
    return float(mean), float(var.sqrt())


def _to_device_flat(data: torch.Tensor, device: torch.device, scale: float) -> torch.Tensor:
    """(N, ...) integer pixels -> (N, D) float32 in [0, 1] on the device (moved as uint8 / int first)."""
    x = data.to(device).reshape(len(data), -1).to(torch.float32)
    return x.div_(scale)


def _finish(
    name: str,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    normalization: str,
    moments: tuple[float, float] | None = None,
) -> DataSplits:
    """Normalise all splits in place with the train split's statistics (or 0.5 / 0.5);
    `moments`: those statistics when the caller has them already."""
    if normalization == "half":
        mean, std = 0.5, 0.5
    elif moments is not None:
        mean, std = moments
        if not std > 0:
            std = 1.0
    else:
        std_t, mean_t = torch.std_mean(train_x, correction=0)
        mean, std = float(mean_t), float(std_t)  # one sync, once per load
        if not std > 0:
            std = 1.0
    for t in (train_x, val_x, test_x):
        t.sub_(mean).div_(std)
    return DataSplits(
        name=name,
        train_x=train_x, train_y=train_y,
        val_x=val_x, val_y=val_y,
        test_x=test_x, test_y=test_y,
        input_shape=input_shape, num_classes=num_classes,
        mean=mean, std=std,
    )


# --- digits and blobs ----------------------------------------------------------------------


def _load_digits(device: torch.device, seed: int, val_size: int, normalization: str) -> DataSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)  # (1797, 8, 8), values 0..16
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    n = len(labels)
    n_test = n // 5
    fixed = torch.randperm(n, generator=_generator(_DIGITS_TEST_SEED))
    test_idx, rest = fixed[:n_test], fixed[n_test:]
    rest = rest[torch.randperm(len(rest), generator=_generator(seed))]
    n_val = min(val_size, n // 5)
    val_idx, train_idx = rest[:n_val], rest[n_val:]

    def part(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _to_device_flat(images[idx], device, 16.0), labels[idx].to(device)

    train, val, test = part(train_idx), part(val_idx), part(test_idx)
    return _finish(
        "digits", *train, *val, *test,
        input_shape=(1, 8, 8), num_classes=10, normalization=normalization,
    )


def _load_blobs(device: torch.device, seed: int, normalization: str) -> DataSplits:
    gen = _generator(seed)
    centres = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(2).repeat_interleave(BLOBS_PER_CLASS)
        x = centres[y] + BLOBS_STD * torch.randn(len(y), 2, generator=gen)
        order = torch.randperm(len(y), generator=gen)
        return x[order].to(device), y[order].to(device)

    train, val, test = sample(), sample(), sample()  # consecutive draws: three disjoint samples
    return _finish(
        "blobs", *train, *val, *test,
        input_shape=(2,), num_classes=2, normalization=normalization,
    )


# --- fashion-mnist / mnist: IDX files, decoded once ------------------------------------------


def _idx_tensors(key: str, root: Path, source, download: bool) -> tuple[torch.Tensor, ...]:
    """(train images, train labels, test images, test labels) as uint8 / int64 CPU tensors.

    The files are staged into the cache (from `source`) or downloaded when missing; the
    decoded tensors come from `<cache>/<Class>/decoded.pt` when it matches the files' MD5s.
    """
    class_name, resources = IDX_FILES[key]
    raw = root / class_name / "raw"
    files = [filename for filename, _ in resources]
    if source is not None:
        src = _find_source_dir(Path(source).expanduser(), class_name, files)
        digests = _stage_from_source(resources, src, raw)
    elif not _extracted(raw, files):
        if not download:
            raise _Unavailable(f"not in the cache {raw} and downloads are off")
        _download(_torchvision_class(key), root, raw)
        digests = None
    else:
        digests = None
    if digests is None:  # the cache's own files: hash what is there (the .gz, else the extracted file)
        digests = {}
        for filename in files:
            path = raw / filename if (raw / filename).is_file() else raw / filename[: -len(".gz")]
            digests[filename] = _md5(path)
    decoded = raw.parent / DECODED_FILE
    tensors = _read_decoded(decoded, digests)
    if tensors is not None:
        return tensors
    try:
        tensors = tuple(_read_idx(raw / filename[: -len(".gz")]) for filename in files)
    except (OSError, ValueError, RuntimeError) as exc:  # truncated / foreign files left in the cache
        raise DataError(
            f"cached {key} files in {raw} are unreadable ({_one_line(exc)}); delete that folder and retry"
        ) from None
    images, labels, test_images, test_labels = tensors
    if len(images) != len(labels) or len(test_images) != len(test_labels):
        raise DataError(f"cached {key} files in {raw} do not match (images and labels differ in number); "
                        f"delete that folder and retry")
    _write_decoded(decoded, digests, tensors)
    return tensors


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _read_idx(path: Path) -> torch.Tensor:
    """An IDX file (big-endian header: two zero bytes, a type code, the number of dimensions,
    then each dimension as a 32-bit integer) of unsigned bytes as a tensor of its shape."""
    data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path.name}: not an IDX file of unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + math.prod(shape):
        raise ValueError(f"{path.name}: {len(data)} bytes, the header announces {header + math.prod(shape)}")
    values = torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).reshape(shape)
    return values if ndim > 1 else values.to(torch.int64)


def _read_decoded(path: Path, digests: dict[str, str]) -> tuple[torch.Tensor, ...] | None:
    """The saved tensors if `path` holds them for files with exactly these MD5s, else None
    (missing, stale, unreadable or foreign: the caller decodes again)."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or saved.get("format") != DECODED_FORMAT or saved.get("md5") != digests:
            return None
        tensors = tuple(saved["tensors"])
        if len(tensors) != 4 or not all(isinstance(t, torch.Tensor) for t in tensors):
            return None
        if len(tensors[0]) != len(tensors[1]) or len(tensors[2]) != len(tensors[3]):
            return None
        return tensors
    except Exception:  # any damage to a cache file means: decode again
        return None


def _write_decoded(path: Path, digests: dict[str, str], tensors: tuple[torch.Tensor, ...]) -> None:
    """Save the decoded tensors atomically (temp file + rename); a cache that cannot be
    written (read-only, full) only costs the next run a decode."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": DECODED_FORMAT, "md5": dict(digests), "tensors": list(tensors)}, f)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _torchvision_class(key: str):
    from torchvision import datasets

    return {"fashion-mnist": datasets.FashionMNIST, "mnist": datasets.MNIST}[key]


def _extracted(raw: Path, files: list[str]) -> bool:
    return all((raw / f[: -len(".gz")]).is_file() for f in files)


def _find_source_dir(source: Path, class_name: str, files: list[str]) -> Path:
    """The folder inside `source` that holds the `.gz` files, else a `DataError`."""
    if not source.is_dir():
        raise DataError(f"data source folder {source} does not exist")
    candidates = [source, source / "raw", source / class_name / "raw"]
    best, best_missing = source, files
    for folder in candidates:
        missing = [f for f in files if not (folder / f).is_file()]
        if not missing:
            return folder
        if len(missing) < len(best_missing):
            best, best_missing = folder, missing
    raise DataError(
        f"data source folder {best} lacks {', '.join(best_missing)} "
        f"(also looked in {source}/raw and {source}/{class_name}/raw)"
    )


def _stage_from_source(resources, src: Path, raw: Path) -> dict[str, str]:
    """Check the `.gz` files in `src` against the published MD5s, copy each into the cache
    (if absent or different) and extract it; returns {file name: MD5}.

    Both the copy and the extraction go through temporary names and a rename, so an
    interrupted run never leaves a half-written file under its final name. `src` is only read.
    """
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the dataset cache {raw}: {exc.strerror or exc}") from None
    digests = {}
    for filename, md5 in resources:
        src_file, dst_file = src / filename, raw / filename
        out_file = raw / filename[: -len(".gz")]
        digest = digests[filename] = _md5(src_file)
        if digest != md5:
            raise DataError(f"{src_file} is corrupt (MD5 differs from the original {filename}); replace it")
        same = dst_file.is_file() and dst_file.stat().st_size == src_file.stat().st_size
        if same and out_file.is_file():
            continue
        with tempfile.TemporaryDirectory(dir=raw, prefix=".staging-") as tmp:
            tmp_gz, tmp_out = Path(tmp) / filename, Path(tmp) / out_file.name
            shutil.copyfile(src_file, tmp_gz)
            try:
                with gzip.open(tmp_gz, "rb") as f_in, open(tmp_out, "wb") as f_out:
                    shutil.copyfileobj(f_in, f_out, 1 << 22)
            except (OSError, EOFError) as exc:  # bad gzip despite the MD5 (cannot really happen)
                raise DataError(f"{src_file} is not a readable gzip file ({_one_line(exc)})") from None
            os.replace(tmp_out, out_file)
            os.replace(tmp_gz, dst_file)
    return digests


def _download(cls, root: Path, raw: Path) -> None:
    """torchvision's download + MD5 check + extraction, quiet and with a short socket timeout."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    sink = io.StringIO()  # torchvision prints URLs and a tqdm bar; keep the terminal / TUI clean
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            cls(str(root), train=True, download=True)
    except (RuntimeError, OSError) as exc:  # URLError and timeouts are OSErrors
        raise _Unavailable(f"not in the cache {raw} and the download failed: {_one_line(exc)}") from None
    finally:
        socket.setdefaulttimeout(previous)


def _one_line(exc: BaseException) -> str:
    """The most specific line of an exception message (torchvision's are multi-line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def load_config_data(config: "LabConfig", device: torch.device | str | None = None) -> DataSplits:
    """The config's dataset as device tensors; a bad data folder names the key or variable behind it."""
    d = config.data
    device = resolve_device(config.run.device) if device is None else torch.device(device)
    if d.dataset in ("fashion-mnist", "mnist") and d.val_size >= 60000:  # before any file is read or cached
        raise DataError(f"data.val_size = {d.val_size}: must be < 60000 for {d.dataset} "
                        "(its 60,000 training images are split into training and validation)")
    try:
        return load_dataset(d.dataset, device=device, seed=config.run.seed, val_size=d.val_size,
                            normalization=d.normalization, source=d.source or None,
                            cache_dir=d.cache_dir or None, fallback=d.fallback)
    except DataError as exc:
        text = str(exc)
        if text.startswith("val_size "):  # the split, not the folder: blame the key that set it
            raise DataError(f"data.val_size = {d.val_size}: {text}") from None
        if "dataset cache" in text or text.startswith("cached "):  # writing or reading the cache
            raise DataError(f"{_cache_key(d)}: {text}") from None
        if d.source:
            raise DataError(f"data.source = {d.source!r}: {exc}") from None
        if os.environ.get("ACTLAB_DATA") and d.dataset in ("fashion-mnist", "mnist"):
            raise DataError(f"ACTLAB_DATA={os.environ['ACTLAB_DATA']}: {exc}") from None
        if d.cache_dir:
            raise DataError(f"data.cache_dir = {d.cache_dir!r}: {exc}") from None
        raise
    except OSError as exc:  # copying into the cache: a read-only or full cache folder
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        raise DataError(f"{_cache_key(d)}: cannot write the dataset cache{where} ({exc.strerror or exc})") from None


def _cache_key(d) -> str:
    """What chose the dataset cache: the key, the variable, or the default folder."""
    if d.cache_dir:
        return f"data.cache_dir = {d.cache_dir!r}"
    if os.environ.get("ACTLAB_CACHE"):
        return f"ACTLAB_CACHE={os.environ['ACTLAB_CACHE']}"
    return f"the dataset cache {default_cache_dir()}"
