"""Type stubs of the native module `vggcache._core` (the package's public API is in __init__)."""

import os
from typing import Any, Callable, Dict, List, Optional, Tuple, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "run_cli",
    "extract",
    "train_head",
    "compare_baselines",
    "Cache",
    "Head",
    "VggcacheError",
    "CacheError",
    "ModelError",
    "InputError",
    "UsageError",
    "__version__",
]
__version__: str

class VggcacheError(Exception):
    """Base class of vggcache's errors; the message is the library's."""

class CacheError(VggcacheError):
    """A feature cache that cannot be opened, read or written."""

class ModelError(VggcacheError):
    """A trunk model, ONNX Runtime or a trained head that cannot be found, loaded or used."""

class InputError(VggcacheError):
    """Inputs that do not fit together or cannot be read (images, splits, shapes, run folders)."""

class UsageError(VggcacheError):
    """A setting no run can use (the CLI's exit code 2)."""

_Events = Optional[Callable[[Dict[str, Any]], Any]]

def run_cli(argv: List[str]) -> int:
    """Runs the `vggcache` command line (argv[0] is the program name); returns its exit code."""

def extract(
    images: str, out: str, options: Optional[Dict[str, Any]] = None, progress: _Events = None
) -> Dict[str, Any]:
    """Extracts features of `images` into the cache `out`; the summary as a dict."""

def train_head(
    features: str, options: Optional[Dict[str, Any]] = None, progress: _Events = None
) -> Dict[str, Any]:
    """Trains a head on the cache `features`; the run as a dict."""

def compare_baselines(
    features: str, options: Optional[Dict[str, Any]] = None, progress: _Events = None
) -> Dict[str, Any]:
    """The head beside the baselines; the report (`rows`, `notes`, ...) and files written."""

@final
class Cache:
    """An opened, verified feature cache."""

    def __new__(cls, path: str) -> Cache: ...
    @property
    def path(self) -> os.PathLike[str]: ...
    @property
    def classes(self) -> List[str]: ...
    @property
    def splits(self) -> List[str]: ...
    @property
    def dim(self) -> int: ...
    @property
    def trunk_fingerprint(self) -> str: ...
    @property
    def shard_files(self) -> List[os.PathLike[str]]: ...
    def __len__(self) -> int: ...
    def _features(
        self, split: Optional[str] = None
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], List[str], int]:
        """(X (n, D) float32, y (n,) int64 (-1 unlabelled), paths, address of X's data)."""

@final
class Head:
    """A trained head loaded from a run folder."""

    def __new__(cls, run: str) -> Head: ...
    @property
    def run(self) -> os.PathLike[str]: ...
    @property
    def classes(self) -> List[str]: ...
    @property
    def dim(self) -> int: ...
    @property
    def meta(self) -> Dict[str, str]: ...
    def predict_features(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Probabilities (n, classes) of features x (n, D), C-contiguous float32."""
    def _predict_images(
        self, images: str, options: Optional[Dict[str, Any]] = None, progress: _Events = None
    ) -> Tuple[List[str], npt.NDArray[np.float32]]: ...
