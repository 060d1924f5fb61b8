"""The installed `vggcache` package: entry point, extract → features, train → predict, Ctrl-C,
errors, torch and arrow views (issue 32's tests)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import vggcache
from conftest import PER_CLASS_TRAIN, PER_CLASS_VAL, cli


def test_installed_package_not_the_checkout() -> None:
    # The module and its native library come from the virtual environment, not the source tree.
    assert Path(vggcache.__file__).resolve().is_relative_to(Path(sys.prefix).resolve())
    checkout = os.environ.get("VGGCACHE_CHECKOUT")
    if checkout:
        root = Path(checkout).resolve()
        for entry in sys.path:
            if entry:
                assert not Path(entry).resolve().is_relative_to(root), f"{entry} is in the checkout"


def test_cli_help_and_version() -> None:
    r = cli("--help")
    for sub in ("extract", "train-head", "predict", "doctor", "cache"):
        assert sub in r.stdout
    assert cli("--version").stdout.strip() == f"vggcache {vggcache.__version__}"
    bad = cli("no-such-command", check=False)
    assert bad.returncode == 2 and "no-such-command" in bad.stderr


def test_cli_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # `vggcache models list | head -1`: the reader is gone before the command writes. The command
    # ends as other command-line tools do (SIGPIPE), without a Rust panic or a Python traceback.
    import subprocess

    exe = Path(sys.executable).parent / "vggcache"
    env = dict(os.environ, VGGCACHE_HOME=str(tmp_path / "store"))
    p = subprocess.Popen([str(exe), "models", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(60)
    assert "panicked" not in err and "Traceback" not in err, err
    assert p.returncode == -signal.SIGPIPE, (p.returncode, err)


def test_doctor_finds_the_installed_onnxruntime(tiny_model: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DYLIB_PATH"}
    r = cli("doctor", "--model", tiny_model, env=env)
    line = next(l for l in r.stdout.splitlines() if l.startswith("ONNX Runtime:"))
    # The runtime is the onnxruntime wheel installed with the package.
    assert str(Path(sys.prefix).resolve()) in line or sys.prefix in line, r.stdout
    assert "onnxruntime" in line and "capi" in line, line
    assert "1.31.1" in line, line
    assert "output:" in r.stdout and "[N,128]" in r.stdout, r.stdout


def test_extract_summary_and_resume(tmp_path: Path, small_images: Path, tiny_model: Path) -> None:
    events = []
    out = tmp_path / "c"
    s = vggcache.extract(small_images, out, model=tiny_model, device="cpu", progress=events.append)
    n = 2 * (PER_CLASS_TRAIN + PER_CLASS_VAL)
    assert (s.extracted, s.reused, s.skipped, s.cache_rows) == (n, 0, 0, n)
    assert s.provider == "CPUExecutionProvider" and s.cache_bytes > 0
    assert s.images_per_second > 0
    batches = [e for e in events if e["kind"] == "batch"]
    assert batches[0]["done"] == 0 and batches[-1]["done"] == batches[-1]["total"] == n
    assert events[-1]["kind"] == "finished"
    again = vggcache.extract(small_images, out, model=tiny_model, device="cpu", progress=False)
    assert (again.extracted, again.reused) == (0, n)


def test_extract_summary_lists_the_skipped_files(tmp_path: Path, small_images: Path, tiny_model: Path) -> None:
    images = tmp_path / "images"
    for cls in ("cat", "dog"):
        (images / cls).mkdir(parents=True)
        for f in sorted((small_images / "train" / cls).iterdir())[:3]:
            (images / cls / f.name).symlink_to(f.resolve())
    (images / "dog" / "broken.jpg").write_bytes(b"not a jpeg at all")
    s = vggcache.extract(images, tmp_path / "c", model=tiny_model, device="cpu", val_fraction=0.5, progress=False)
    assert (s.extracted, s.skipped) == (6, 1), s
    assert len(s.skipped_files) == 1, s.skipped_files
    path, reason = s.skipped_files[0]
    assert path == "dog/broken.jpg" and reason, s.skipped_files
    again = vggcache.extract(images, tmp_path / "c", model=tiny_model, device="cpu", val_fraction=0.5, progress=False)
    assert again.reused == 6 and [p for p, _ in again.skipped_files] == ["dog/broken.jpg"], again


def test_default_progress_goes_to_pythons_stderr(tmp_path: Path, small_images: Path, tiny_model: Path) -> None:
    # A notebook shows what Python writes to sys.stderr, not what native code writes to file
    # descriptor 2: the default progress (no tqdm here: a line every ~10%) must use the former.
    import subprocess

    code = f"""
import io, sys
import vggcache
buf = io.StringIO()
sys.stderr = buf
vggcache.extract({str(small_images)!r}, {str(tmp_path / "c")!r}, model={str(tiny_model)!r}, device="cpu")
vggcache.train_head({str(tmp_path / "c")!r}, name="p", runs_dir={str(tmp_path / "runs")!r}, epochs=2, hidden=[8])
sys.__stdout__.write(buf.getvalue())
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    n = 2 * (PER_CLASS_TRAIN + PER_CLASS_VAL)
    for needle in (f"{n} images in", f"{n} to extract", f"{n}/{n} images", "epoch 1: train loss", "epoch 2: train loss"):
        assert needle in r.stdout, f"{needle!r} not in what Python's sys.stderr got:\n{r.stdout}"
    # Nothing of it on the native stderr, which a notebook hides.
    assert "images" not in r.stderr and "epoch" not in r.stderr, r.stderr


def _pyarrow_split(cache_dir: Path, split: str):
    """The split's rows as pyarrow reads the cache's Parquet files (manifest order)."""
    pq = pytest.importorskip("pyarrow.parquet")
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    xs, ys, paths = [], [], []
    for shard in manifest["shards"]:
        t = pq.read_table(cache_dir / shard["file"])
        keep = np.array([s == split for s in t.column("split").to_pylist()])
        feats = t.column("features").combine_chunks()
        dim = feats.type.list_size
        values = feats.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
        xs.append(values[keep])
        ys.extend(np.array([-1 if l is None else l for l in t.column("label").to_pylist()])[keep])
        paths.extend(np.array(t.column("path").to_pylist(), dtype=object)[keep])
    return np.concatenate(xs), np.array(ys, dtype=np.int64), list(paths)


def test_features_equal_pyarrow_bit_for_bit(tiny_cache: Path) -> None:
    c = vggcache.open_cache(tiny_cache)
    assert c.classes == ["cat", "dog"] and c.splits == ["train", "val"]
    assert len(c) == 2 * (PER_CLASS_TRAIN + PER_CLASS_VAL) and c.dim == 128
    for split, n in (("train", 2 * PER_CLASS_TRAIN), ("val", 2 * PER_CLASS_VAL)):
        x, y, paths = c.features(split)
        assert x.dtype == np.float32 and x.shape == (n, 128) and x.flags.c_contiguous
        assert y.dtype == np.int64 and y.shape == (n,)
        ex, ey, epaths = _pyarrow_split(tiny_cache, split)
        assert np.array_equal(x.view(np.uint32), ex.astype(np.float32).view(np.uint32))
        assert np.array_equal(y, ey) and paths == epaths


def test_f16_cache_widened(tmp_path: Path, small_images: Path, tiny_model: Path) -> None:
    out = tmp_path / "c16"
    vggcache.extract(small_images, out, model=tiny_model, device="cpu", feature_dtype="f16", progress=False)
    x, _, _ = vggcache.open_cache(out).features("train")
    ex, _, _ = _pyarrow_split(out, "train")
    assert ex.dtype == np.float16 and x.dtype == np.float32
    assert np.array_equal(x, ex.astype(np.float32))


def test_features_are_not_copied(tiny_cache: Path) -> None:
    # The array numpy holds is the buffer the library decoded the Parquet into: same address,
    # owned by the Rust container numpy keeps as its base, not by a second numpy buffer.
    from vggcache import _core

    x, _, _, address = _core.Cache(os.fspath(tiny_cache))._features("train")
    assert x.ctypes.data == address
    assert not x.flags.owndata and not isinstance(x.base, np.ndarray)
    assert type(x.base).__name__ == "PySliceContainer"
    x2, _, _ = vggcache.open_cache(tiny_cache).features("train")
    assert not x2.flags.owndata and type(x2.base).__name__ == "PySliceContainer"


def test_to_arrow(tiny_cache: Path) -> None:
    pytest.importorskip("pyarrow")
    c = vggcache.open_cache(tiny_cache)
    t = c.to_arrow()
    assert t.num_rows == len(c)
    assert {"path", "split", "label", "features"} <= set(t.column_names)


def test_to_torch(tiny_cache: Path) -> None:
    try:
        import torch
    except ImportError:
        pytest.skip(
            "torch is not installed in the test venv: python/requirements-test.txt leaves it out "
            "(its PyPI wheel is ~539 MB, too large for CI); pip install torch there to run this test"
        )
    c = vggcache.open_cache(tiny_cache)
    ds = c.to_torch("train")
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == 2 * PER_CLASS_TRAIN
    x, label = ds[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == (128,) and label in (0, 1)
    X, y, paths = c.features("train")
    assert np.array_equal(ds.x.numpy(), X) and np.array_equal(ds.y.numpy(), y) and ds.paths == paths
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert tuple(xb.shape) == (4, 128) and yb.tolist() == y[:4].tolist()


def _read_csv(text: str) -> dict:
    rows = list(csv.DictReader(io.StringIO(text)))
    return {r["path"]: np.array([float(r["prob_cat"]), float(r["prob_dog"])]) for r in rows}


def test_train_head_then_predict_equals_cli(
    tmp_path: Path, tiny_cache: Path, small_images: Path, tiny_model: Path
) -> None:
    epochs = []
    run = vggcache.train_head(
        tiny_cache,
        name="py",
        runs_dir=tmp_path / "runs",
        epochs=3,
        hidden=[16],
        progress=lambda e: epochs.append(e) if e["kind"] == "epoch" else None,
    )
    assert Path(run.path) == tmp_path / "runs" / "py" and (Path(run.path) / "head.safetensors").is_file()
    assert [m["epoch"] for m in run.metrics] == [1, 2, 3] and len(epochs) == 3
    assert 1 <= run.best_epoch <= 3 and run.classes == ["cat", "dog"]
    assert {"train_loss", "val_loss", "val_acc"} <= set(run.metrics[0])

    head = vggcache.load_head(run)
    assert head.classes == ["cat", "dog"] and head.dim == 128
    val = small_images / "val"
    paths, proba = head.predict_images(val, model=tiny_model, device="cpu", cache=tmp_path / "pc", progress=False)
    assert proba.shape == (len(paths), 2) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)

    # The same images' features through predict_features: the same probabilities, exactly.
    x, _, fpaths = vggcache.open_cache(tmp_path / "pc").features(None)
    by_path = dict(zip(fpaths, head.predict_features(x)))
    assert np.array_equal(np.stack([by_path[p] for p in paths]), proba)

    # The CLI's predict on the same images (its CSV has 6 decimals).
    r = cli("predict", "--head", run.path, "--images", val, "--model", tiny_model,
            "--device", "cpu", "--cache", tmp_path / "pc-cli")
    expected = _read_csv(r.stdout)
    assert sorted(expected) == sorted(paths)
    for p, row in zip(paths, proba):
        assert np.abs(expected[p] - row).max() <= 5e-7 + 1e-9, p

    # A list of files: the paths as given, in that order.
    files = [small_images / "val" / "dog" / Path(paths[-1]).name, small_images / "val" / "cat" / Path(paths[0]).name]
    got, p2 = head.predict_images(files, model=tiny_model, device="cpu", progress=False)
    assert got == [os.fspath(f) for f in files]
    assert np.array_equal(p2, proba[[len(paths) - 1, 0]])


def test_compare_baselines_rows(tmp_path: Path, tiny_cache: Path) -> None:
    rows = vggcache.compare_baselines(tiny_cache, c=1.0, out=tmp_path / "cmp", progress=False)
    names = [r["name"] for r in rows]
    assert any("logistic" in n for n in names) and any("majority" in n for n in names), names
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0
    assert (tmp_path / "cmp" / "compare.md").is_file()


def test_views_and_tta_through_the_api(tmp_path: Path, small_images: Path, tiny_model: Path) -> None:
    cache = tmp_path / "views"
    s = vggcache.extract(
        small_images, cache, model=tiny_model, device="cpu", views=2, tta_views=True, view_seed=3, progress=False
    )
    n_train, n_val = 2 * PER_CLASS_TRAIN, 2 * PER_CLASS_VAL
    assert s.extracted == n_train * 3 + n_val * 7, s
    run = vggcache.train_head(
        cache, runs_dir=tmp_path / "runs", name="v", epochs=1, hidden=[8], views="all", tta=True, progress=False
    )
    assert "with TTA" in run.summary, run.summary
    rows = vggcache.compare_baselines(
        cache, head=run, c=1.0, logistic_views="all", tta=True, out=tmp_path / "cmp", progress=False
    )
    assert {r["name"] for r in rows} >= {"linfa-logistic", "majority class"}
    notes = (tmp_path / "cmp" / "compare.md").read_text()
    assert f"fitted on {n_train * 3} rows" in notes and "test-time augmentation" in notes, notes
    with pytest.raises(vggcache.UsageError, match='views must be one of "sample", "all", "plain"'):
        vggcache.train_head(cache, runs_dir=tmp_path / "runs", views="some", progress=False)  # type: ignore[arg-type]


def test_keyboard_interrupt_leaves_a_valid_cache(tmp_path: Path, catsdogs: Path, tiny_model: Path) -> None:
    images = catsdogs / "train"
    out = tmp_path / "c"
    started = threading.Event()

    def progress(e: dict) -> None:
        if e["kind"] == "batch" and e["done"] > 0:
            started.set()

    def interrupt() -> None:
        # Ctrl-C as a terminal sends it: SIGINT to the process, from another thread, mid-run.
        if started.wait(60):
            signal.raise_signal(signal.SIGINT)

    timer = threading.Thread(target=interrupt, daemon=True)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        vggcache.extract(images, out, model=tiny_model, device="cpu", batch_size=8, shard_rows=32, progress=progress)
    timer.join(5)
    # The run stopped early (the cancel hook, polled before each batch), and what it committed
    # is a valid cache.
    total = sum(1 for p in images.rglob("*") if p.is_file())
    rows = 0
    if (out / "manifest.json").is_file():
        cli("cache", "verify", "--features", out)
        rows = len(vggcache.open_cache(out))
    assert rows < total, f"the interrupted run extracted all {total} images: it did not stop"
    again = vggcache.extract(images, out, model=tiny_model, device="cpu", progress=False)
    assert again.reused == rows and again.cache_rows + again.skipped == total
    cli("cache", "verify", "--features", out)


def test_keyboard_interrupt_during_train_head_leaves_no_run(tmp_path: Path, tiny_cache: Path) -> None:
    runs = tmp_path / "runs"
    seen = []

    def progress(e: dict) -> None:
        # Ctrl-C after the second epoch, while the job runs.
        if e["kind"] == "epoch":
            seen.append(e["metrics"]["epoch"])
            if seen[-1] == 2:
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        vggcache.train_head(tiny_cache, name="ctrl-c", runs_dir=runs, epochs=200, hidden=[8], progress=progress)
    assert seen[-1] < 10, f"training went on to epoch {seen[-1]} after Ctrl-C at epoch 2"
    # Nothing half-written is visible under the run's name, and the same name trains afterwards.
    assert not (runs / "ctrl-c" / "head.safetensors").exists()
    run = vggcache.train_head(tiny_cache, name="ctrl-c", runs_dir=runs, epochs=2, hidden=[8], progress=False)
    assert [m["epoch"] for m in run.metrics] == [1, 2]
    vggcache.load_head(run)


def test_each_exception_type(tmp_path: Path, small_images: Path, tiny_model: Path, tiny_cache: Path) -> None:
    errors = (vggcache.CacheError, vggcache.ModelError, vggcache.InputError, vggcache.UsageError)
    for e in errors:
        assert issubclass(e, vggcache.VggcacheError) and issubclass(e, Exception)

    empty = tmp_path / "not-a-cache"
    empty.mkdir()
    with pytest.raises(vggcache.CacheError, match="not-a-cache"):
        vggcache.open_cache(empty)

    missing = tmp_path / "no-such-model.onnx"
    with pytest.raises(vggcache.ModelError, match="no-such-model.onnx"):
        vggcache.extract(small_images, tmp_path / "c1", model=missing, progress=False)

    with pytest.raises(vggcache.InputError, match="no-such-folder"):
        vggcache.extract(tmp_path / "no-such-folder", tmp_path / "c2", model=tiny_model, progress=False)

    with pytest.raises(vggcache.UsageError, match="batch_size"):
        vggcache.extract(small_images, tmp_path / "c3", model=tiny_model, batch_size=0, progress=False)
    with pytest.raises(vggcache.UsageError, match="split"):
        vggcache.open_cache(tiny_cache).features("nope")
    with pytest.raises(vggcache.UsageError, match="unexpected"):
        vggcache._core.extract(os.fspath(small_images), os.fspath(tmp_path / "c4"), {"model": os.fspath(tiny_model), "bogus": 1})

    with pytest.raises(vggcache.ModelError, match="head.safetensors"):
        vggcache.load_head(tmp_path)
    run = vggcache.train_head(tiny_cache, name="e", runs_dir=tmp_path / "runs", epochs=1, hidden=[8], progress=False)
    with pytest.raises(vggcache.InputError, match="128"):
        vggcache.load_head(run).predict_features(np.zeros((2, 5), dtype=np.float32))


def test_quickstart_example_runs(tmp_path: Path, small_images: Path, tiny_model: Path) -> None:
    import subprocess

    examples = os.environ.get("VGGCACHE_EXAMPLES")
    if not examples:
        pytest.skip("VGGCACHE_EXAMPLES is not set: run these tests through `make test-python`")
    script = Path(examples) / "quickstart.py"
    env = dict(os.environ, VGGCACHE_IMAGES=str(small_images), VGGCACHE_MODEL=str(tiny_model),
               VGGCACHE_WORK=str(tmp_path))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "val accuracy" in r.stdout and "kept epoch" in r.stdout
    assert (tmp_path / "runs" / "quickstart" / "head.safetensors").is_file()


USER_SCRIPT = """
from typing import List, Tuple

import numpy as np

import vggcache

s: vggcache.ExtractSummary = vggcache.extract("images", cache="cache", trunk="vgg16", progress=False)
rate: float = s.images_per_second
skipped: List[Tuple[str, str]] = s.skipped_files
c = vggcache.open_cache("cache")
X, y, paths = c.features("train")
n: int = len(c)
fingerprint: str = c.trunk_fingerprint
run = vggcache.train_head("cache", name="r", epochs=3, hidden=[64])
best: int = run.best_epoch
head = vggcache.load_head(run)
p: np.ndarray = head.predict_features(X)
files, proba = head.predict_images("images/val", device="cpu")
rows = vggcache.compare_baselines("cache", c=1.0)
vggcache.extract("images", cache="views", views=2, tta_views=True, progress=False)
run2 = vggcache.train_head("views", views="sample", tta=True, extra_features=["other"])
rows2 = vggcache.compare_baselines("views", head=run2, logistic_views="all", tta=True, c_rule="one-se")
try:
    vggcache.open_cache("nope")
except vggcache.CacheError as e:
    message: str = str(e)
"""


def test_typed_stubs_match_the_native_module_and_check_a_users_script(tmp_path: Path) -> None:
    import subprocess

    def mypy(*args: str) -> None:
        r = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{args}:\n{r.stdout}\n{r.stderr}"

    # _core.pyi against the compiled module: every name, signature and class kind.
    mypy("mypy.stubtest", "vggcache._core")
    # A notebook user's calls type-check strictly against the installed package (py.typed).
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    mypy("mypy", "--strict", "user.py")
