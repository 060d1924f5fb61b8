"""Fixtures of the installed-package tests: the tiny trunk, a small real image folder, a cache.

These tests run against the installed wheel from a temporary directory (`make test-python`);
the checkout is reached only through the data paths in the environment:
VGGCACHE_TEST_FIXTURES (tests/fixtures), VGGCACHE_TEST_DATA (real images, ../shared/data),
VGGCACHE_EXAMPLES (examples/), VGGCACHE_CHECKOUT (to check it is on no search path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

PER_CLASS_TRAIN = 12
PER_CLASS_VAL = 4


def _env_dir(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set: run these tests through `make test-python`")
    p = Path(value)
    if not p.is_dir():
        pytest.skip(f"{name}={value} is not a folder")
    return p


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _env_dir("VGGCACHE_TEST_FIXTURES")


@pytest.fixture(scope="session")
def tiny_model(fixtures_dir: Path) -> Path:
    m = fixtures_dir / "tiny_trunk.onnx"
    assert m.is_file(), f"{m} is missing"
    return m


@pytest.fixture(scope="session")
def catsdogs() -> Path:
    data = _env_dir("VGGCACHE_TEST_DATA")
    root = data / "catsdogs"
    if not (root / "train" / "cat").is_dir():
        pytest.skip(f"no real images: {root}/train/cat is missing (set VGGCACHE_TEST_DATA)")
    return root


def _link_images(src: Path, dst: Path, n: int) -> List[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    assert len(files) == n, f"{src} has fewer than {n} images"
    for f in files:
        (dst / f.name).symlink_to(f)
    return files


@pytest.fixture(scope="session")
def small_images(tmp_path_factory: pytest.TempPathFactory, catsdogs: Path) -> Path:
    """A small ImageFolder (train 12 + val 4 per class) of real catsdogs images, as symlinks."""
    root = tmp_path_factory.mktemp("images")
    for cls in ("cat", "dog"):
        _link_images(catsdogs / "train" / cls, root / "train" / cls, PER_CLASS_TRAIN)
        _link_images(catsdogs / "val" / cls, root / "val" / cls, PER_CLASS_VAL)
    return root


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory, small_images: Path, tiny_model: Path) -> Path:
    """`small_images` extracted with the tiny trunk."""
    import vggcache

    out = tmp_path_factory.mktemp("cache") / "c"
    s = vggcache.extract(small_images, out, model=tiny_model, device="cpu", progress=False)
    assert s.extracted == 2 * (PER_CLASS_TRAIN + PER_CLASS_VAL), s
    return out


def cli(*args: object, check: bool = True, **kw: object) -> subprocess.CompletedProcess:
    """Runs the installed `vggcache` entry point (the venv's, beside this Python)."""
    exe = Path(sys.executable).parent / "vggcache"
    assert exe.is_file(), f"the entry point {exe} is not installed"
    r = subprocess.run(
        [str(exe), *map(str, args)], capture_output=True, text=True, timeout=600, **kw  # type: ignore[call-overload]
    )
    if check:
        assert r.returncode == 0, f"vggcache {args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r
