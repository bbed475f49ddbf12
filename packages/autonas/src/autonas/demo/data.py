"""The demo's data: MNIST-1D, generated on the spot by the ``mnist1d`` package, split three ways.

MNIST-1D draws 1-D signals of 40 samples from ten templates (one per digit), each padded,
sheared, translated, scaled and overlaid with noise at random. The package computes the data set
from its templates with a fixed seed, so the demo needs no download (its download helper is never
called). Unlike 8x8 images of digits, it separates small and large networks: the smallest subnet
of the demo's model is several points less accurate than the largest.

The generated training split trains the supernet; the generated test split is divided
(stratified, seeded) into a validation set that scores search candidates and a test set that only
the final report looks at.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

NUM_SAMPLES = 8000
TRAIN_SPLIT = 0.5


@dataclass(frozen=True)
class Split:
    """Signals (N, 1, 40) as float32 and their labels (N,) as int64."""

    signals: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def loader(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        """A DataLoader of ``(signals, labels)`` batches; shuffling is seeded."""
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        dataset = TensorDataset(self.signals, self.labels)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


@dataclass(frozen=True)
class DemoData:
    """The three splits of the demo's data set."""

    train: Split
    val: Split
    test: Split


def generate_mnist1d(num_samples: int = NUM_SAMPLES, train_split: float = TRAIN_SPLIT) -> tuple[Split, Split]:
    """Generate MNIST-1D with the package's default transformations and data seed; return (train, test).

    The result depends only on the arguments. The package seeds Python's and NumPy's global
    generators while it works; their states are restored afterwards, so the caller's seeding
    stays in effect.

    Args:
        num_samples: signals in total (a multiple of 10 gives balanced classes).
        train_split: share of the signals in the training split.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    if num_samples < 10 or not 0 < train_split < 1:
        raise ValueError(f"num_samples must be >= 10 and train_split in (0, 1), got {num_samples} and {train_split}")
    args = get_dataset_args()
    args.num_samples, args.train_split = num_samples, train_split
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)

    def split(signals: str, labels: str) -> Split:
        inputs = torch.as_tensor(raw[signals], dtype=torch.float32).unsqueeze(1)
        return Split(inputs, torch.as_tensor(raw[labels], dtype=torch.int64))

    return split("x", "y"), split("x_test", "y_test")


def load_splits(seed: int = 0, val_fraction: float = 0.5) -> DemoData:
    """Generate MNIST-1D (8000 signals) and split it: 4000 for training, the rest into validation and test.

    Args:
        seed: seed of the validation/test division; the same seed gives the same three sets.
        val_fraction: share of the held-out signals used for validation (search scores); the
            others are the test set.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    train, held_out = generate_mnist1d()
    labels = held_out.labels.numpy()
    val, test = train_test_split(np.arange(len(labels)), train_size=val_fraction, stratify=labels, random_state=seed)

    def subset(indices: np.ndarray) -> Split:
        index = torch.from_numpy(indices)
        return Split(held_out.signals[index], held_out.labels[index])

    return DemoData(train=train, val=subset(val), test=subset(test))
