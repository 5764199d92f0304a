"""iterate_batches: order, coverage, drop_last, dtype preservation and seeded shuffling."""

from __future__ import annotations

import pytest
import torch

from spikeforge.data.base import ArrayDataset
from spikeforge.data.loader import iterate_batches


def dataset(n: int = 10) -> ArrayDataset:
    return ArrayDataset(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone(),
                        torch.arange(n, dtype=torch.int64))


def test_sequential_batches() -> None:
    batches = list(iterate_batches(dataset(), 4, shuffle=False, generator=None, device="cpu"))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape == (4, 1, 2, 2) and x.device.type == "cpu"
    assert torch.equal(x[:, 0, 0, 0].long(), y)
    dropped = list(iterate_batches(dataset(), 4, shuffle=False, generator=None, device="cpu", drop_last=True))
    assert [len(b[1]) for b in dropped] == [4, 4]


def test_shuffle_is_a_seeded_permutation() -> None:
    def order(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        out = []
        for x, y in iterate_batches(dataset(), 3, shuffle=True, generator=gen, device=torch.device("cpu")):
            assert torch.equal(x[:, 0, 0, 0].long(), y)  # images stay paired with labels
            out += y.tolist()
        return out

    a, b, c = order(0), order(0), order(1)
    assert sorted(a) == list(range(10)) and a == b and a != c and a != list(range(10))


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(iterate_batches(dataset(), 0, shuffle=False, generator=None, device="cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_moves_to_cuda_pinned() -> None:
    ds = dataset()
    ds = ArrayDataset(ds.x.pin_memory(), ds.y.pin_memory())
    for pin in (False, True):
        batches = list(iterate_batches(ds, 4, shuffle=True, generator=torch.Generator().manual_seed(0),
                                       device="cuda", pin_memory=pin))
        assert all(x.is_cuda and x.dtype == torch.uint8 and y.is_cuda for x, y in batches)
        assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(10))
