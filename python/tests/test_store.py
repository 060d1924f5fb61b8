"""The model store through the installed package: `vggcache models install` / `models list` run by
the wheel's console script into a temporary VGGCACHE_HOME, then `vggcache.extract(trunk=...)`
resolving the trunk from that store, from a temporary working folder (issue 32)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import vggcache
from conftest import PER_CLASS_TRAIN, PER_CLASS_VAL, cli


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_models_install_and_list_through_the_entry_point_then_extract_by_trunk_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_images: Path, tiny_model: Path
) -> None:
    home = tmp_path / "store"
    work = tmp_path / "work"
    work.mkdir()
    # The store comes from VGGCACHE_HOME alone, for the command and for this process alike; the
    # working folder is an empty temporary one, so nothing can be found relative to it either.
    monkeypatch.setenv("VGGCACHE_HOME", str(home))
    monkeypatch.chdir(work)
    env = dict(os.environ)
    model = home / "models" / "vgg16.onnx"

    # Nothing installed yet: the listing says so, and extract names the one command that fixes it.
    r = cli("models", "list", env=env, cwd=work)
    assert f"model store: {home} (VGGCACHE_HOME)" in r.stdout, r.stdout
    assert "no trunks installed" in r.stdout and "vggcache models install vgg16" in r.stdout, r.stdout
    with pytest.raises(vggcache.ModelError, match=r"Fix: `vggcache models install vgg16`") as miss:
        vggcache.extract(small_images, "c", trunk="vgg16", device="cpu", progress=False)
    assert str(model) in str(miss.value)

    # Installed under the default trunk's name (the tiny fixture stands in for the real build).
    r = cli("models", "install", "vgg16", "--from", tiny_model, env=env, cwd=work)
    assert r.stdout.strip() == str(model), r.stdout + r.stderr
    assert model.read_bytes() == tiny_model.read_bytes()
    sha = _sha256(tiny_model)
    r = cli("models", "list", env=env, cwd=work)
    for needle in ("vgg16\n", f"  file:      {model}", f"  source:    file {tiny_model}", f"  sha256:    {sha}"):
        assert needle in r.stdout, f"{needle!r} in {r.stdout}"
    r = cli("doctor", "--trunk", "vgg16", env=env, cwd=work)
    line = next(l for l in r.stdout.splitlines() if l.startswith("model:"))
    assert str(model) in line and "from --trunk vgg16 in the model store (VGGCACHE_HOME)" in line, line

    # The Python API finds it by name in the same store, relative paths taken from the working folder.
    n = 2 * (PER_CLASS_TRAIN + PER_CLASS_VAL)
    s = vggcache.extract(small_images, "c", trunk="vgg16", device="cpu", progress=False)
    assert (s.extracted, s.skipped, s.cache_rows) == (n, 0, n), s
    assert Path(s.cache).resolve() == (work / "c").resolve()
    manifest = json.loads((work / "c" / "manifest.json").read_text())
    assert manifest["model"]["path"] == str(model), manifest["model"]
    assert manifest["model"]["fingerprint"] == sha
    c = vggcache.open_cache("c")
    assert c.trunk_fingerprint == sha and len(c) == n and c.dim == 128

    # No trunk given: the default name, vgg16, from the store.
    s = vggcache.extract(small_images, "c-default", device="cpu", progress=False)
    assert s.extracted == n
    assert json.loads((work / "c-default" / "manifest.json").read_text())["model"]["path"] == str(model)
