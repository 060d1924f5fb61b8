"""vggcache: transfer learning with cached features, from Python.

Extract features of an image folder once with a frozen trunk (ONNX Runtime), read them as numpy
arrays, train a small MLP head in seconds, predict with it::

    import vggcache
    vggcache.extract("data/catsdogs", cache="cache")            # (N, D) features → Parquet
    X, y, paths = vggcache.open_cache("cache").features("train")  # X: (N, D) float32
    run = vggcache.train_head("cache", name="first", epochs=10)
    head = vggcache.load_head(run)
    proba = head.predict_features(X)                              # (N, classes)

Every call runs the same library as the `vggcache` command (no second engine); errors are
`VggcacheError` subclasses carrying the library's messages.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Union

from vggcache._ort import point_ort_at_package as _point_ort

_point_ort()

import numpy as np  # noqa: E402

from vggcache import _core  # noqa: E402
from vggcache._core import (  # noqa: E402
    CacheError,
    InputError,
    ModelError,
    UsageError,
    VggcacheError,
)
from vggcache._progress import Progress, callback as _callback  # noqa: E402

__version__: str = _core.__version__

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "extract",
    "open_cache",
    "train_head",
    "load_head",
    "compare_baselines",
    "ExtractSummary",
    "FeatureCache",
    "Run",
    "Head",
    "VggcacheError",
    "CacheError",
    "ModelError",
    "InputError",
    "UsageError",
]


def _options(**kw: Any) -> Dict[str, Any]:
    """Keyword options for the native call, without the ones left at None (library defaults)."""
    return {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in kw.items() if v is not None}


@dataclass(frozen=True)
class ExtractSummary:
    """What one extraction did."""

    cache: str
    """The cache folder."""
    extracted: int
    """Images run through the trunk now."""
    reused: int
    """Cached rows kept as they were."""
    removed: int
    """Stale cached rows dropped."""
    skipped: int
    """Images that could not be used (listed in `skipped_csv`)."""
    seconds: float
    """Wall time of the call."""
    provider: str
    """ONNX Runtime execution provider used."""
    cache_rows: int
    """Rows in the cache after the call."""
    cache_bytes: int
    """Bytes of its Parquet files."""
    skipped_csv: str
    """The cache's list of skipped images with the reasons (skipped.csv)."""
    skipped_files: List[Tuple[str, str]] = field(default_factory=list)
    """`(path, reason)` of each image this call could not use (read from `skipped_csv`); paths
    relative to the images folder."""

    @property
    def images_per_second(self) -> float:
        """Extracted images per wall second."""
        return self.extracted / self.seconds if self.seconds > 0 else 0.0


def extract(
    images: PathLike,
    cache: PathLike = "cache",
    *,
    trunk: Optional[str] = None,
    model: Optional[PathLike] = None,
    device: str = "auto",
    batch_size: Optional[int] = None,
    workers: Optional[int] = None,
    sessions: Optional[int] = None,
    shard_rows: Optional[int] = None,
    val_fraction: Optional[float] = None,
    force: bool = False,
    feature_dtype: Optional[str] = None,
    threads: Optional[int] = None,
    ort_lib: Optional[PathLike] = None,
    views: Optional[int] = None,
    tta_views: Optional[bool] = None,
    view_seed: Optional[int] = None,
    progress: Progress = True,
) -> ExtractSummary:
    """Runs the frozen trunk over the image folder `images` and caches one feature vector per
    image in `cache` (as `vggcache extract --images IMAGES --out CACHE`). Resumable: images
    already cached are not extracted again. `trunk` is a trunk name (default vgg16) and `model`
    an ONNX file (one or the other); `device` is auto, cuda or cpu. Unset options take the CLI's
    defaults. `views=K` adds K seeded augmented views of each training image, `tta_views=True`
    the test-time views (flip, five crops) of each val/test image, for `train_head(tta=True)` and
    `compare_baselines(tta=True)`. Ctrl-C (KeyboardInterrupt) leaves the rows written so far
    valid."""
    d = _core.extract(
        os.fspath(images),
        os.fspath(cache),
        _options(
            trunk=trunk,
            model=model,
            device=device,
            batch_size=batch_size,
            workers=workers,
            sessions=sessions,
            shard_rows=shard_rows,
            val_fraction=val_fraction,
            force=force,
            feature_dtype=feature_dtype,
            threads=threads,
            ort_lib=ort_lib,
            views=views,
            tta_views=tta_views,
            view_seed=view_seed,
        ),
        _callback(progress),
    )
    d["cache"] = os.fspath(d["cache"])
    d["skipped_csv"] = os.fspath(d["skipped_csv"])
    d["skipped_files"] = _read_skipped(d["skipped_csv"])
    return ExtractSummary(**d)


def _read_skipped(path: str) -> List[Tuple[str, str]]:
    """The `(path, reason)` rows of a cache's skipped.csv (none when it is absent)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [(row["path"], row["reason"]) for row in csv.DictReader(f)]
    except FileNotFoundError:
        return []


class FeatureCache:
    """An opened, verified feature cache (see `open_cache`). Holds the cache's shared lock while
    open, so no writer deletes its files underneath it; `close()` or a `with` block releases it."""

    def __init__(self, path: PathLike) -> None:
        self._c: Optional[_core.Cache] = _core.Cache(os.fspath(path))

    @property
    def _cache(self) -> _core.Cache:
        if self._c is None:
            raise CacheError("this FeatureCache is closed: open it again with vggcache.open_cache(path)")
        return self._c

    def close(self) -> None:
        """Releases the cache (its lock)."""
        self._c = None

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def path(self) -> str:
        """The cache folder."""
        return os.fspath(self._cache.path)

    @property
    def classes(self) -> List[str]:
        """Class names; label i is classes[i]."""
        return self._cache.classes

    @property
    def splits(self) -> List[str]:
        """Splits present, sorted (train, val, test)."""
        return self._cache.splits

    @property
    def dim(self) -> int:
        """Feature width D."""
        return self._cache.dim

    @property
    def trunk_fingerprint(self) -> str:
        """Fingerprint (`sha256:...`) of the trunk model that made the features; a head trained
        on them only runs on that trunk."""
        return self._cache.trunk_fingerprint

    @property
    def files(self) -> List[str]:
        """The cache's Parquet files, in row order."""
        return [os.fspath(p) for p in self._cache.shard_files]

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        if self._c is None:
            return "FeatureCache(closed)"
        return (
            f"FeatureCache({self.path!r}: {len(self)} rows x {self.dim} features, "
            f"splits {self.splits}, classes {self.classes})"
        )

    def features(self, split: Optional[str] = "train") -> Tuple[np.ndarray, np.ndarray, List[str]]:
        """`(X, y, paths)` of split `split` ("train", "val", "test"; None = every row), in cache
        order: X (n, D) float32 (f16 caches widened), y (n,) int64 class indices (-1 for an
        unlabelled image), paths the images' paths relative to the images folder. X is the
        array the library decoded the Parquet into, handed to numpy without a copy."""
        x, y, paths, _ = self._cache._features(split)
        return x, y, paths

    def to_arrow(self) -> Any:
        """The cache's rows as one `pyarrow.Table` (needs pyarrow)."""
        try:
            import pyarrow.parquet as pq  # type: ignore[import-not-found]
        except ImportError as e:
            raise ImportError("FeatureCache.to_arrow() needs pyarrow: pip install pyarrow") from e
        import pyarrow as pa  # type: ignore[import-not-found]

        return pa.concat_tables([pq.read_table(f) for f in self.files])

    def to_torch(self, split: Optional[str] = "train") -> Any:
        """Split `split` as a `torch.utils.data.Dataset` of `(x (D,) float32 tensor, label)`
        (needs torch; the tensors share the numpy array's memory)."""
        from vggcache.torch import FeatureDataset

        return FeatureDataset(*self.features(split))


def open_cache(path: PathLike = "cache") -> FeatureCache:
    """Opens and verifies the feature cache in `path` (made by `extract`)."""
    return FeatureCache(path)


@dataclass(frozen=True)
class Run:
    """A train-head run: its folder and what training recorded."""

    path: str
    """The run folder (RUNS_DIR/NAME), which `load_head` takes."""
    best_epoch: int
    """1-based epoch of the kept head."""
    metrics: List[Dict[str, Any]]
    """One dict per epoch: epoch, train_loss, train_acc, val_loss, val_acc, select_loss,
    select_acc, seconds."""
    classes: List[str]
    """Class names."""
    summary: str
    """The summary table on the val split, as the CLI prints it."""
    page: Optional[str] = None
    """The run's report.html (None for a streamed run)."""
    select_rows: int = 0
    """Rows of the selection split that chose the kept epoch (0: the last epoch was kept)."""

    def __fspath__(self) -> str:
        return self.path


def _run(d: Dict[str, Any]) -> Run:
    d = dict(d)
    d["path"] = os.fspath(d["path"])
    d["page"] = None if d.get("page") is None else os.fspath(d["page"])
    return Run(**d)


def train_head(
    cache: PathLike = "cache",
    *,
    name: Optional[str] = None,
    runs_dir: Optional[PathLike] = None,
    epochs: Optional[int] = None,
    hidden: Optional[Sequence[int]] = None,
    dropout: Optional[float] = None,
    batch_size: Optional[int] = None,
    lr: Optional[float] = None,
    weight_decay: Optional[float] = None,
    seed: Optional[int] = None,
    patience: Optional[int] = None,
    select_fraction: Optional[float] = None,
    standardize: Optional[bool] = None,
    val_fraction: Optional[float] = None,
    stream: Optional[bool] = None,
    memory_budget: Optional[int] = None,
    images: Optional[PathLike] = None,
    views: Optional[Literal["sample", "all", "plain"]] = None,
    tta: Optional[bool] = None,
    extra_features: Sequence[PathLike] = (),
    drop_unmatched: Optional[bool] = None,
    progress: Progress = True,
) -> Run:
    """Trains the MLP head on the cache's train split (as `vggcache train-head`) and writes the
    run folder RUNS_DIR/NAME (default runs/<timestamp>). Unset options take the CLI's
    defaults. `views` ("sample", "all" or "plain") reads the augmented views of a cache made
    with `extract(views=K)`; `tta=True` scores val by test-time augmentation;
    `extra_features` joins caches of the same images by other trunks (by content hash)."""
    d = _core.train_head(
        os.fspath(cache),
        _options(
            name=name,
            runs_dir=runs_dir,
            epochs=epochs,
            hidden=list(hidden) if hidden is not None else None,
            dropout=dropout,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            seed=seed,
            patience=patience,
            select_fraction=select_fraction,
            standardize=standardize,
            val_fraction=val_fraction,
            stream=stream,
            memory_budget=memory_budget,
            images=images,
            views=views,
            tta=tta,
            extra_features=[os.fspath(f) for f in extra_features] or None,
            drop_unmatched=drop_unmatched,
        ),
        _callback(progress),
    )
    return _run(d)


class Head:
    """A trained head (see `load_head`): the scaler it was trained with is applied in every
    prediction."""

    def __init__(self, run: Union[PathLike, Run]) -> None:
        self._h = _core.Head(os.fspath(run))

    @property
    def run(self) -> str:
        """The run folder."""
        return os.fspath(self._h.run)

    @property
    def classes(self) -> List[str]:
        """Class names; column i of the probabilities is classes[i]."""
        return self._h.classes

    @property
    def dim(self) -> int:
        """Input width D."""
        return self._h.dim

    @property
    def meta(self) -> Dict[str, str]:
        """The checkpoint's metadata (trunk fingerprint, cache, ...)."""
        return self._h.meta

    def __repr__(self) -> str:
        return f"Head({self.run!r}: D = {self.dim}, classes {self.classes})"

    def predict_features(self, x: Any) -> np.ndarray:
        """Class probabilities (n, classes) float32 of features `x` (n, D) (any array-like,
        converted to C-contiguous float32)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise InputError(f"predict_features takes features of shape (n, {self.dim}), got shape {x.shape}")
        return self._h.predict_features(x)

    def predict_images(
        self,
        images: Union[PathLike, Iterable[PathLike]],
        *,
        cache: Optional[PathLike] = None,
        trunk: Optional[str] = None,
        model: Optional[PathLike] = None,
        device: str = "auto",
        batch_size: Optional[int] = None,
        progress: Progress = True,
    ) -> Tuple[List[str], np.ndarray]:
        """`(paths, probabilities (n, classes))` for a folder of images (paths relative to it,
        sorted) or a list of image files (their paths as given, in that order). The trunk must be
        the one the head was trained on. A folder's features are cached as `vggcache predict`
        caches them (or in `cache`); a list's go to a temporary cache."""
        opts = _options(trunk=trunk, model=model, device=device, batch_size=batch_size)
        cb = _callback(progress)
        if isinstance(images, (str, os.PathLike)):
            if cache is not None:
                opts["cache"] = os.fspath(cache)
            paths, proba = self._h._predict_images(os.fspath(images), opts, cb)
            return paths, proba
        files = [os.fspath(p) for p in images]
        tmp = tempfile.mkdtemp(prefix="vggcache-predict-")
        try:
            folder = Path(tmp, "images")
            folder.mkdir()
            names = []
            for i, f in enumerate(files):
                name = f"{i:08d}_{Path(f).name}"
                os.symlink(os.path.abspath(f), folder / name)
                names.append(name)
            opts["cache"] = os.fspath(Path(tmp, "cache"))
            got, proba = self._h._predict_images(os.fspath(folder), opts, cb)
            row = {p: i for i, p in enumerate(got)}
            missing = [files[i] for i, n in enumerate(names) if n not in row]
            if missing:
                raise InputError(f"these images could not be used (unreadable or not images): {missing}")
            return files, proba[[row[n] for n in names]]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def load_head(run: Union[PathLike, Run]) -> Head:
    """Loads the head of a train-head run folder (or a `Run`)."""
    return Head(run)


def compare_baselines(
    cache: PathLike = "cache",
    *,
    head: Optional[Union[PathLike, Run]] = None,
    c: Optional[float] = None,
    c_rule: Optional[Literal["anchored", "one-se"]] = None,
    max_iter: Optional[int] = None,
    standardize: Optional[bool] = None,
    val_fraction: Optional[float] = None,
    memory_budget: Optional[int] = None,
    out: Optional[PathLike] = None,
    images: Optional[PathLike] = None,
    logistic_views: Optional[Literal["plain", "all"]] = None,
    tta: Optional[bool] = None,
    extra_features: Sequence[PathLike] = (),
    drop_unmatched: Optional[bool] = None,
    progress: Progress = True,
) -> List[Dict[str, Any]]:
    """The head (`head`, or one trained with the defaults) beside linfa-logistic and the
    majority class on the same features (as `vggcache compare-baselines`); returns the table's
    rows, one dict per model (name, accuracy, log_loss, per_class, fit_seconds, ...). The report
    files go to `out` (default runs/compare). `c=None` searches C on the train rows with
    `c_rule` ("anchored", the default: C = 1 unless beaten by more than one standard error of
    fold accuracy; or "one-se"). `logistic_views="all"` fits linfa-logistic on the cached
    augmented views too; `tta=True` scores every model by test-time augmentation;
    `extra_features` joins caches of the same images by other trunks."""
    d = _core.compare_baselines(
        os.fspath(cache),
        _options(
            head=head,
            c=c,
            c_rule=c_rule,
            max_iter=max_iter,
            standardize=standardize,
            val_fraction=val_fraction,
            memory_budget=memory_budget,
            out=out,
            images=images,
            logistic_views=logistic_views,
            tta=tta,
            extra_features=[os.fspath(f) for f in extra_features] or None,
            drop_unmatched=drop_unmatched,
        ),
        _callback(progress),
    )
    return list(d["report"]["rows"])
