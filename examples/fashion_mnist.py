"""Fashion-MNIST: convolutional SLNNs and hybrid SLAF+ReLU networks against ReLU (the paper's
image experiment; the shared code and its options are in ``images.py``).

Full mode downloads Fashion-MNIST (official 60,000/10,000 split), or reads local IDX files
with ``--data DIR``. Quick mode is offline and falls back to scikit-learn's 8x8 digits, which
results.md states: quick-mode numbers are not Fashion-MNIST numbers.
"""

from __future__ import annotations

import sys

from images import experiment

if __name__ == "__main__":
    sys.exit(experiment("fashion-mnist", "Fashion-MNIST", sys.argv[1:]))
