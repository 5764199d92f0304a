"""Write ``src/spikeforge/assets/mnist-subset.npz``: the MNIST subset shipped with the package.

Provenance
----------
Source: the official MNIST IDX files (Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database
of handwritten digits"), as kept in ``../shared/data/mnist`` (gzip-compressed; the decompressed
training images have md5 ``6bbc9ace898e44ae57da46a324031adb``, the official file).

Contents: the first 10,000 training images and labels (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, in file order) and the first 2,000 test images and labels
(``t10k-*``), unmodified, stored with ``numpy.savez_compressed`` as

* ``x_train``: ``uint8 [10000, 28, 28]``, ``y_train``: ``uint8 [10000]``
* ``x_test``: ``uint8 [2000, 28, 28]``, ``y_test``: ``uint8 [2000]``

No pickled objects (read with ``allow_pickle=False``). Regenerate with::

    python scripts/make_bundled_mnist.py [--src ../shared/data/mnist] \
        [--out src/spikeforge/assets/mnist-subset.npz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from spikeforge.data.config import DataConfig
from spikeforge.data.static import load_mnist

REPO = Path(__file__).resolve().parents[1]
TRAIN_SAMPLES = 10_000
TEST_SAMPLES = 2_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=str(REPO.parent / "shared" / "data" / "mnist"),
                   help="folder with the MNIST IDX files")
    p.add_argument("--out", default=str(REPO / "src" / "spikeforge" / "assets" / "mnist-subset.npz"))
    args = p.parse_args()
    cfg = DataConfig(name="mnist", train_limit=TRAIN_SAMPLES, test_limit=TEST_SAMPLES)
    splits = load_mnist(args.src, cfg)
    arrays = {}
    for split, ds in (("train", splits.train), ("test", splits.test)):
        arrays[f"x_{split}"] = ds.x[:, 0].numpy().astype(np.uint8)
        arrays[f"y_{split}"] = ds.y.numpy().astype(np.uint8)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {shapes}")


if __name__ == "__main__":
    main()
