"""MNIST: convolutional SLNNs and hybrid SLAF+ReLU networks against ReLU (the paper's image
experiment; the shared code and its options are in ``images.py``).

Full mode downloads MNIST (official 60,000/10,000 split). Where it cannot be downloaded, run
on the 10,000 MNIST test images alone, split into our own train/test sets::

    python examples/mnist.py --data ../shared/data/mnist-t10k

results.md then says so; those numbers are not comparable with the official split. Quick mode
(``--quick``) uses a subsample of that offline t10k split.
"""

from __future__ import annotations

import sys

from images import experiment

if __name__ == "__main__":
    sys.exit(experiment("mnist", "MNIST", sys.argv[1:]))
