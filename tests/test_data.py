"""engine/data.py: splits, normalisation, caching, source folders, offline fallback, errors.

The real-data tests read ../shared/datasets (beside the repository, read-only) and cache into
a session temporary folder, never into the user's cache.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from actlab.engine.data import DATASET_NAMES, DataSplits, default_cache_dir, load_dataset
from actlab.engine.errors import DataError, UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FMNIST_RAW = SHARED / "FashionMNIST" / "raw"
GZ_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    """Keep a developer's ACTLAB_DATA / ACTLAB_CACHE out of every test."""
    monkeypatch.delenv("ACTLAB_DATA", raising=False)
    monkeypatch.delenv("ACTLAB_CACHE", raising=False)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="session")
def shared() -> Path:
    if not FMNIST_RAW.is_dir():
        pytest.skip("../shared/datasets not found: real FashionMNIST tests need it")
    return SHARED


@pytest.fixture(scope="session")
def shared_before(shared) -> dict[str, tuple[int, int]]:
    """Listing, sizes and mtimes of the shared folder before any test read it."""
    return _snapshot(shared)


@pytest.fixture(scope="session")
def cache(tmp_path_factory, shared_before) -> Path:
    return tmp_path_factory.mktemp("actlab-cache")


@pytest.fixture(scope="session")
def fmnist(shared, cache) -> DataSplits:
    return load_dataset("fashion-mnist", source=shared, cache_dir=cache, seed=42)


def _raw_pixels(splits: DataSplits, x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: back to the integer pixel values 0..255 (checked to be integers)."""
    pix = (x * splits.std + splits.mean) * 255
    rounded = pix.round()
    assert (pix - rounded).abs().max() < 1e-3
    return rounded.to(torch.int64)


def _row_keys(pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """An exact int64 fingerprint per (image, label) row, sorted: equal multisets <=> equal keys."""
    rows = pixels.reshape(len(pixels), -1).to(torch.int64)
    weights = torch.randint(1, 2**20, (rows.shape[1],), generator=torch.Generator().manual_seed(0))
    keys = (rows @ weights) * 16 + labels.to(torch.int64)
    return keys.sort().values


# --- FashionMNIST from the shared folder ------------------------------------------------


@pytest.mark.shared
def test_fashion_mnist_sizes_shapes_dtypes(fmnist):
    assert fmnist.name == "fashion-mnist" and fmnist.note == ""
    assert fmnist.sizes == (50000, 10000, 10000)
    assert fmnist.train_x.shape == (50000, 784)
    assert fmnist.val_x.shape == (10000, 784)
    assert fmnist.test_x.shape == (10000, 784)
    assert fmnist.input_shape == (1, 28, 28) and fmnist.input_size == 784 and fmnist.num_classes == 10
    for x, y in ((fmnist.train_x, fmnist.train_y), (fmnist.val_x, fmnist.val_y), (fmnist.test_x, fmnist.test_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.device.type == "cpu" and x.is_contiguous()


@pytest.mark.shared
def test_fashion_mnist_dataset_normalisation(fmnist):
    assert fmnist.mean == pytest.approx(0.2860, abs=2e-3)
    assert fmnist.std == pytest.approx(0.3530, abs=2e-3)
    std, mean = torch.std_mean(fmnist.train_x)
    assert abs(float(mean)) < 1e-3
    assert abs(float(std) - 1.0) < 1e-3
    # the other splits use the train statistics, so they are close to, not exactly, 0 / 1
    assert abs(float(fmnist.val_x.mean())) < 0.02
    assert abs(float(fmnist.test_x.mean())) < 0.05


@pytest.mark.shared
def test_labels_cover_all_classes(fmnist):
    for y in (fmnist.train_y, fmnist.val_y, fmnist.test_y):
        assert int(y.min()) == 0 and int(y.max()) == 9
        counts = torch.bincount(y, minlength=10)
        assert len(counts) == 10 and int(counts.min()) > 0.08 * len(y)  # FashionMNIST is balanced
    assert int(torch.bincount(fmnist.test_y).min()) == 1000


@pytest.mark.shared
def test_train_and_val_partition_the_official_train_set(fmnist, cache):
    from torchvision.datasets import FashionMNIST

    official_train = FashionMNIST(str(cache), train=True)
    official_test = FashionMNIST(str(cache), train=False)
    train_pix = _raw_pixels(fmnist, fmnist.train_x)
    val_pix = _raw_pixels(fmnist, fmnist.val_x)
    ours = _row_keys(torch.cat([train_pix, val_pix]), torch.cat([fmnist.train_y, fmnist.val_y]))
    theirs = _row_keys(official_train.data, official_train.targets)
    assert torch.equal(ours, theirs)  # every image exactly once: train and val are disjoint
    # the test set is the official one, in its order
    assert torch.equal(_raw_pixels(fmnist, fmnist.test_x), official_test.data.reshape(10000, -1).long())
    assert torch.equal(fmnist.test_y, official_test.targets)


@pytest.mark.shared
def test_split_is_determined_by_seed(fmnist, shared, cache):
    again = load_dataset("fashion-mnist", source=shared, cache_dir=cache, seed=42)
    assert torch.equal(again.train_x, fmnist.train_x) and torch.equal(again.val_y, fmnist.val_y)
    other = load_dataset("fashion-mnist", source=shared, cache_dir=cache, seed=7)
    assert not torch.equal(other.val_y, fmnist.val_y)
    assert not torch.equal(other.val_x[:100], fmnist.val_x[:100])
    assert torch.equal(other.test_y, fmnist.test_y)


@pytest.mark.shared
def test_half_normalisation_maps_pixels_to_minus_one_one(shared, cache):
    half = load_dataset("fashion-mnist", source=shared, cache_dir=cache, normalization="half")
    assert (half.mean, half.std) == (0.5, 0.5)
    for x in (half.train_x, half.val_x, half.test_x):
        assert float(x.min()) == -1.0 and float(x.max()) == 1.0


@pytest.mark.shared
def test_custom_val_size(shared, cache):
    splits = load_dataset("fashion-mnist", source=shared, cache_dir=cache, val_size=5000)
    assert splits.sizes == (55000, 5000, 10000)
    with pytest.raises(DataError, match="val_size"):
        load_dataset("fashion-mnist", source=shared, cache_dir=cache, val_size=60000)


@pytest.mark.shared
@pytest.mark.parametrize("layout", ["direct", "raw", "root"])
def test_source_folder_layouts(fmnist, shared, cache, layout):
    source = {"direct": FMNIST_RAW, "raw": shared / "FashionMNIST", "root": shared}[layout]
    splits = load_dataset("fashion-mnist", source=source, cache_dir=cache, seed=42)
    assert torch.equal(splits.train_x, fmnist.train_x)


@pytest.mark.shared
def test_env_source_and_mnist(shared, cache, monkeypatch):
    monkeypatch.setenv("ACTLAB_DATA", str(shared))
    mnist = load_dataset("mnist", cache_dir=cache)
    assert mnist.name == "mnist" and mnist.sizes == (50000, 10000, 10000)
    assert mnist.mean == pytest.approx(0.1307, abs=2e-3)
    assert mnist.std == pytest.approx(0.3081, abs=2e-3)
    assert (cache / "MNIST" / "raw" / "train-images-idx3-ubyte").stat().st_size == 16 + 60000 * 784


@pytest.mark.shared
def test_cached_dataset_loads_without_source_or_network(fmnist, cache):
    cached = load_dataset("fashion-mnist", cache_dir=cache, seed=42, download=False, fallback="none")
    assert cached.name == "fashion-mnist"
    assert torch.equal(cached.train_x, fmnist.train_x)


@pytest.mark.shared
def test_shared_source_is_never_written(fmnist, shared, shared_before, cache, monkeypatch):
    load_dataset("fashion-mnist", source=shared, cache_dir=cache)  # a load with a warm cache too
    monkeypatch.setenv("ACTLAB_DATA", str(shared))
    load_dataset("mnist", cache_dir=cache)
    assert _snapshot(shared) == shared_before
    assert not any(p.name.endswith("-ubyte") for p in shared.rglob("*"))  # nothing extracted there


# --- broken source folders ------------------------------------------------------------------


def _copy_gz(dst: Path, names=GZ_FILES) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(FMNIST_RAW / name, dst / name)
    return dst


@pytest.mark.shared
def test_corrupt_gz_is_an_error_naming_the_file(shared, tmp_path):
    src = _copy_gz(tmp_path / "src")
    bad = src / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", source=src, cache_dir=tmp_path / "cache")  # no silent fallback
    message = str(info.value)
    assert str(bad) in message and "corrupt" in message and "\n" not in message


@pytest.mark.shared
def test_replaced_source_file_is_checked_again(shared, tmp_path):
    src = _copy_gz(tmp_path / "src")
    cache = tmp_path / "cache"
    assert load_dataset("fashion-mnist", source=src, cache_dir=cache).name == "fashion-mnist"
    bad = src / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-10])  # another size than the cached copy
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", source=src, cache_dir=cache)


def test_missing_gz_files_are_listed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    (src / "train-labels-idx1-ubyte.gz").write_bytes(b"x")
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", source=src, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert str(src) in message
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "train-images-idx3-ubyte.gz" not in message


def test_missing_source_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        load_dataset("mnist", source=tmp_path / "nowhere", cache_dir=tmp_path / "cache")
    assert str(tmp_path / "nowhere") in str(info.value)
    assert isinstance(info.value, UserError)


# --- offline fallback -----------------------------------------------------------------------


def test_offline_without_cache_falls_back_to_digits(tmp_path):
    splits = load_dataset("fashion-mnist", cache_dir=tmp_path, download=False)
    assert splits.name == "digits" and splits.input_shape == (1, 8, 8)
    assert splits.sizes == (1079, 359, 359)
    assert "fashion-mnist" in splits.note and "digits" in splits.note and "\n" not in splits.note
    assert not any(tmp_path.iterdir())  # nothing written when downloads are off


def test_failed_download_falls_back_fast_and_restores_timeout(tmp_path, monkeypatch, capfd):
    from torchvision.datasets import FashionMNIST

    seen = {}

    def offline_download(self):
        seen["timeout"] = socket.getdefaulttimeout()
        print("Downloading http://example.invalid/train-images-idx3-ubyte.gz")  # must not leak
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried http://example.invalid/, got:\n"
            "<urlopen error [Errno -2] Name or service not known>\n"
        )

    monkeypatch.setattr(FashionMNIST, "download", offline_download)
    socket.setdefaulttimeout(None)
    splits = load_dataset("fashion-mnist", cache_dir=tmp_path)
    assert seen["timeout"] == 10.0
    assert socket.getdefaulttimeout() is None
    assert splits.name == "digits"
    assert splits.note.startswith("fashion-mnist unavailable")
    assert "Name or service not known" in splits.note and "\n" not in splits.note
    assert "Downloading" not in capfd.readouterr().out


def test_fallback_none_raises(tmp_path):
    with pytest.raises(DataError, match="mnist unavailable"):
        load_dataset("mnist", cache_dir=tmp_path, download=False, fallback="none")


# --- digits and blobs -----------------------------------------------------------------------


def test_digits_splits():
    a = load_dataset("digits", seed=1)
    assert a.name == "digits" and a.note == ""
    assert a.sizes == (1079, 359, 359) and sum(a.sizes) == 1797
    assert a.train_x.shape == (1079, 64) and a.input_size == 64 and a.num_classes == 10
    raw = a.train_x * a.std + a.mean
    assert float(raw.min()) == pytest.approx(0.0, abs=1e-5) and float(raw.max()) == pytest.approx(1.0, abs=1e-5)
    assert ((raw * 16) - (raw * 16).round()).abs().max() < 1e-3  # pixel levels 0..16
    assert abs(float(a.train_x.mean())) < 1e-4 and abs(float(a.train_x.std()) - 1) < 1e-3
    assert set(a.val_y.tolist()) == set(range(10))
    b = load_dataset("digits", seed=2)
    assert torch.equal(a.test_y, b.test_y)  # a fixed test split for every seed
    assert not torch.equal(a.val_y, b.val_y)
    assert torch.equal(load_dataset("digits", seed=1).val_x, a.val_x)


def test_digits_val_size_is_clipped_or_honoured():
    assert load_dataset("digits", val_size=100).sizes == (1338, 100, 359)
    assert load_dataset("digits", val_size=10_000).sizes == (1079, 359, 359)


def test_blobs():
    s = load_dataset("blobs", seed=3)
    assert s.name == "blobs" and s.input_shape == (2,) and s.num_classes == 2
    assert s.sizes == (80, 80, 80)
    for x, y in ((s.train_x, s.train_y), (s.val_x, s.val_y), (s.test_x, s.test_y)):
        assert torch.bincount(y).tolist() == [40, 40]
        raw = x * s.std + s.mean
        for label, centre in ((0, -1.0), (1, 1.0)):
            cloud = raw[y == label]
            assert torch.allclose(cloud.mean(0), torch.full((2,), centre), atol=0.25)
            assert torch.allclose(cloud.std(0), torch.full((2,), 0.5), atol=0.15)
    assert not torch.equal(s.train_x, s.val_x) and not torch.equal(s.val_x, s.test_x)
    assert torch.equal(load_dataset("blobs", seed=3).test_x, s.test_x)
    assert not torch.equal(load_dataset("blobs", seed=4).train_x, s.train_x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tensors_live_on_the_requested_device():
    s = load_dataset("digits", device="cuda")
    assert all(t.is_cuda for t in (s.train_x, s.train_y, s.val_x, s.val_y, s.test_x, s.test_y))
    assert torch.equal(s.train_x.cpu(), load_dataset("digits").train_x)


# --- names, options, cache folder -------------------------------------------------------------


def test_unknown_name_suggests_the_closest():
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnst")
    message = str(info.value)
    assert "did you mean 'fashion-mnist'" in message
    assert all(name in message for name in DATASET_NAMES)


def test_names_are_case_and_underscore_insensitive():
    assert load_dataset("DIGITS").name == "digits"
    with pytest.raises(DataError, match="did you mean 'fashion-mnist'"):
        load_dataset("Fashion_MNISTT")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"normalization": "zscore"}, "normalization"),
        ({"fallback": "blobs"}, "fallback"),
        ({"val_size": 0}, "val_size"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(DataError, match=match):
        load_dataset("digits", **kwargs)


def test_default_cache_dir(monkeypatch, tmp_path):
    assert default_cache_dir().parts[-2:] == ("actlab", "datasets")
    monkeypatch.setenv("ACTLAB_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "datasets"
    assert os.fspath(default_cache_dir()).startswith(os.fspath(tmp_path))


# --- the decoded-dataset cache ------------------------------------------------------------------


def _first_test_label(cache: Path) -> int:
    raw = cache / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    return raw.read_bytes()[8]


def _set_first_test_label(cache: Path, value: int) -> None:
    raw = cache / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    data = bytearray(raw.read_bytes())
    data[8] = value
    raw.write_bytes(bytes(data))


def _raw_first_test_label(splits: DataSplits) -> int:
    return int(splits.test_y[0])


@pytest.mark.shared
def test_decoded_cache_is_written_once_and_used_while_the_files_match(shared, tmp_path):
    cache = tmp_path / "cache"
    first = load_dataset("fashion-mnist", cache_dir=cache, source=shared, seed=3)
    decoded = cache / "FashionMNIST" / "decoded.pt"
    saved = torch.load(decoded, weights_only=True)
    assert [t.shape[0] for t in saved["tensors"]] == [60000, 60000, 10000, 10000]
    assert saved["tensors"][0].dtype == torch.uint8 and saved["tensors"][0].shape[1:] == (28, 28)
    assert set(saved["md5"]) == set(GZ_FILES)
    # the extracted file changes but the .gz it came from does not: the decoded tensors are used
    label = _first_test_label(cache)
    _set_first_test_label(cache, (label + 1) % 10)
    again = load_dataset("fashion-mnist", cache_dir=cache, download=False, fallback="none", seed=3)
    assert _raw_first_test_label(again) == label == _raw_first_test_label(first)
    assert torch.equal(again.train_x, first.train_x) and torch.equal(again.val_y, first.val_y)


@pytest.mark.shared
def test_changed_file_is_decoded_again(shared, tmp_path):
    cache = tmp_path / "cache"
    load_dataset("fashion-mnist", cache_dir=cache, source=shared)
    label = _first_test_label(cache)
    _set_first_test_label(cache, (label + 1) % 10)
    gz = cache / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes() + b"\0")  # another MD5 than the one recorded with the tensors
    changed = load_dataset("fashion-mnist", cache_dir=cache, download=False, fallback="none")
    assert _raw_first_test_label(changed) == (label + 1) % 10
    saved = torch.load(cache / "FashionMNIST" / "decoded.pt", weights_only=True)
    assert int(saved["tensors"][3][0]) == (label + 1) % 10  # the cache now holds the new decode


@pytest.mark.shared
@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "foreign", "wrong-shapes"])
def test_damaged_decoded_cache_is_rebuilt_not_an_error(shared, tmp_path, damage):
    cache = tmp_path / "cache"
    good = load_dataset("fashion-mnist", cache_dir=cache, source=shared)
    decoded = cache / "FashionMNIST" / "decoded.pt"
    saved = torch.load(decoded, weights_only=True)
    if damage == "garbage":
        decoded.write_bytes(b"not a tensor file at all")
    elif damage == "empty":
        decoded.write_bytes(b"")
    elif damage == "truncated":
        decoded.write_bytes(decoded.read_bytes()[: decoded.stat().st_size // 2])
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, decoded)
    else:
        saved["tensors"][1] = saved["tensors"][1][:10]
        torch.save(saved, decoded)
    again = load_dataset("fashion-mnist", cache_dir=cache, source=shared)
    assert torch.equal(again.train_x, good.train_x) and torch.equal(again.test_y, good.test_y)
    rebuilt = torch.load(decoded, weights_only=True)
    assert [t.shape[0] for t in rebuilt["tensors"]] == [60000, 60000, 10000, 10000]


@pytest.mark.shared
def test_cached_load_does_not_import_torchvision(shared, tmp_path):
    import subprocess
    import sys

    cache = tmp_path / "cache"
    load_dataset("fashion-mnist", cache_dir=cache, source=shared)
    code = ("import sys; from actlab.engine.data import load_dataset; "
            f"load_dataset('fashion-mnist', cache_dir={str(cache)!r}, source={str(shared)!r}); "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
