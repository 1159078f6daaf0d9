"""CIFAR-10: convolutional SLNNs and hybrid SLAF+ReLU networks against ReLU (the paper's image
experiment; the shared code, the binary-format reader and the options are in ``images.py``).

Full mode downloads ``cifar-10-binary.tar.gz`` (MD5-checked; the binary version, never the
pickled one) or reads it with ``--data PATH``. Quick mode is offline and falls back to
scikit-learn's 8x8 digits, which results.md states: quick-mode numbers are not CIFAR-10 numbers.
"""

from __future__ import annotations

import sys

from images import experiment

if __name__ == "__main__":
    sys.exit(experiment("cifar10", "CIFAR-10", sys.argv[1:]))
