"""The demo's data: scikit-learn's bundled handwritten digits, split three ways.

1797 grey-scale 8x8 images of the digits 0-9 ship with scikit-learn, so the demo needs no
download. The images are scaled to [0, 1] and split (stratified, seeded) into a training set for
the supernet, a validation set that scores search candidates and a test set that only the final
report looks at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

PIXEL_MAX = 16.0  # load_digits stores pixel intensities as integers 0..16


@dataclass(frozen=True)
class Split:
    """Images (N, 1, 8, 8) as float32 in [0, 1] and their labels (N,) as int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def loader(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        """A DataLoader of ``(images, labels)`` batches; shuffling is seeded."""
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        dataset = TensorDataset(self.images, self.labels)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


@dataclass(frozen=True)
class DigitsData:
    """The three splits of the digits data set."""

    train: Split
    val: Split
    test: Split


def load_digit_splits(seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> DigitsData:
    """Load the digits and split them, stratified by class, with a seeded shuffle.

    Args:
        seed: seed of the split; the same seed gives the same three sets.
        val_fraction: share of all images used for validation (search scores).
        test_fraction: share of all images held out for the final report.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) and sum to less than 1"
        )
    digits = load_digits()
    images = (digits.images / PIXEL_MAX).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=labels[rest], random_state=seed
    )

    def split(idx: np.ndarray) -> Split:
        return Split(torch.from_numpy(images[idx]), torch.from_numpy(labels[idx]))

    return DigitsData(train=split(train), val=split(val), test=split(test))
