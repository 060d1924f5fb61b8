"""Points ONNX Runtime's loader at the installed `onnxruntime` package's shared library."""

from __future__ import annotations

import glob
import importlib.util
import os


def onnxruntime_library() -> str | None:
    """Path of `onnxruntime/capi/libonnxruntime.so*` (or .dylib / .dll) of the installed
    `onnxruntime` (or `onnxruntime-gpu`) package, found without importing it; None if absent."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        capi = os.path.join(root, "capi")
        for pattern in ("libonnxruntime.so*", "libonnxruntime*.dylib", "onnxruntime.dll"):
            found = sorted(glob.glob(os.path.join(capi, pattern)))
            if found:
                # The versioned file (libonnxruntime.so.1.31.1) sorts after the bare name.
                return found[-1]
    return None


def point_ort_at_package() -> None:
    """Sets ORT_DYLIB_PATH to the installed package's library unless it is already set."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return
    lib = onnxruntime_library()
    if lib is not None:
        os.environ["ORT_DYLIB_PATH"] = lib
