"""A cache split as a `torch.utils.data.Dataset` (imported only when torch is installed)."""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

try:
    import torch
    from torch.utils.data import Dataset
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "vggcache.torch needs PyTorch (pip install torch); open_cache(...).features(split) "
        "gives the same data as numpy arrays"
    ) from e


class FeatureDataset(Dataset):  # type: ignore[type-arg]
    """Rows of one split: item i is `(x (D,) float32 tensor, label int)`; `paths[i]` its image.
    The tensors share memory with the numpy arrays (torch.from_numpy, no copy)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, paths: List[str]) -> None:
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y)
        self.paths = paths

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> Tuple[Any, int]:
        return self.x[i], int(self.y[i])
