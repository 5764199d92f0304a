"""General NIR graphs (branches, merges, residual and recurrent edges, nested graphs, every primitive)
against a reference written here from the NIR equations (forward Euler, float64, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from spikeforge.models.common import Net  # noqa: E402
from spikeforge.nir import load  # noqa: E402
from spikeforge.nir.graphnet import GraphNet  # noqa: E402

DT = 0.5
T, B = 12, 3
RNG = np.random.default_rng(7)


def affine(n_out: int, n_in: int, scale: float = 1.0) -> nir.Affine:
    return nir.Affine(weight=RNG.normal(0, scale, (n_out, n_in)), bias=RNG.normal(0, 0.1, n_out))


def lif(n: int, tau: float = 2.0, thr: float = 0.6, v_leak: float = 0.0, r: float = 1.5) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, r), v_leak=np.full(n, v_leak), v_threshold=np.full(n, thr),
                   v_reset=np.zeros(n))


def graph(nodes: dict, edges: list[tuple[str, str]], n_in: int, n_out: int) -> nir.NIRGraph:
    nodes = {"in": nir.Input(input_type=np.array([n_in])), **nodes, "out": nir.Output(output_type=np.array([n_out]))}
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def lif_step(v: np.ndarray, i: np.ndarray, n: nir.LIF) -> tuple[np.ndarray, np.ndarray]:
    """Forward Euler, spike at v > θ, reset to v_reset (the NIR LIF)."""
    v = v + DT / n.tau * (n.v_leak - v + n.r * i)
    s = (v > n.v_threshold).astype(float)
    return s, np.where(s > 0, n.v_reset, v)


def aff(n: nir.Affine, x: np.ndarray) -> np.ndarray:
    return x @ n.weight.T + n.bias


def run(g: nir.NIRGraph, x: np.ndarray) -> tuple[np.ndarray, torch.nn.Module]:
    model = load(g, dt=DT).double()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy(), model


def inputs(n: int) -> np.ndarray:
    return RNG.uniform(0, 2, (T, B, n))


def test_residual_branch_merge() -> None:
    """in → a1 → l1 → a2 → l2 → out, with a skip in → l2 (merge) and a branch l1 → a3 → l2."""
    a1, a2, a3, l1, l2 = affine(4, 4), affine(4, 4), affine(4, 4), lif(4), lif(4, thr=0.8)
    g = graph({"a1": a1, "l1": l1, "a2": a2, "a3": a3, "l2": l2},
              [("in", "a1"), ("a1", "l1"), ("l1", "a2"), ("a2", "l2"), ("in", "l2"), ("l1", "a3"), ("a3", "l2"),
               ("l2", "out")], 4, 4)
    x = inputs(4)
    y, model = run(g, x)
    assert isinstance(model, GraphNet)
    v1, v2 = np.zeros((B, 4)), np.zeros((B, 4))
    ref = []
    for t in range(T):
        s1, v1 = lif_step(v1, aff(a1, x[t]), l1)
        s2, v2 = lif_step(v2, aff(a2, s1) + x[t] + aff(a3, s1), l2)
        ref.append(s2)
    np.testing.assert_array_equal(y, np.stack(ref))
    assert 0 < y.mean() < 1


def test_recurrent_edge_reads_previous_step() -> None:
    """l → w → l: the recurrent input at step t is w applied to l's spikes of step t − 1."""
    a, w, l1 = affine(6, 3, 1.5), nir.Linear(weight=RNG.normal(0, 1.0, (6, 6))), lif(6, thr=0.5)
    g = graph({"a": a, "l": l1, "w": w}, [("in", "a"), ("a", "l"), ("l", "w"), ("w", "l"), ("l", "out")], 3, 6)
    x = inputs(3)
    y, _ = run(g, x)
    v, s = np.zeros((B, 6)), np.zeros((B, 6))
    ref = []
    for t in range(T):
        s, v = lif_step(v, aff(a, x[t]) + s @ w.weight.T, l1)
        ref.append(s)
    np.testing.assert_array_equal(y, np.stack(ref))
    assert 0 < y.mean() < 1


def test_nested_subgraph_and_self_loop() -> None:
    """A nested NIRGraph (its Input/Output pass through) holding a neuron with a self-loop via a Scale."""
    inner = nir.NIRGraph(nodes={"i": nir.Input(input_type=np.array([4])), "l": lif(4, thr=0.7),
                                "s": nir.Scale(scale=np.full(4, -0.5)), "o": nir.Output(output_type=np.array([4]))},
                         edges=[("i", "l"), ("l", "s"), ("s", "l"), ("l", "o")], type_check=False)
    a = affine(4, 4, 1.2)
    g = graph({"a": a, "sub": inner}, [("in", "a"), ("a", "sub"), ("sub", "out")], 4, 4)
    x = inputs(4)
    y, _ = run(g, x)
    v, s = np.zeros((B, 4)), np.zeros((B, 4))
    ref = []
    for t in range(T):
        s, v = lif_step(v, aff(a, x[t]) - 0.5 * s, inner.nodes["l"])
        ref.append(s)
    np.testing.assert_array_equal(y, np.stack(ref))


def test_integrators_threshold_delay_scale() -> None:
    """I, LI, CubaLI, Threshold, Delay and Scale in a chain of analog values."""
    n = 3
    li = nir.LI(tau=np.array([2.0, 3.0, 4.0]), r=np.full(n, 2.0), v_leak=np.array([0.0, 0.1, -0.2]))
    integ = nir.I(r=np.full(n, 0.5))
    cuba = nir.CubaLI(tau_syn=np.full(n, 1.5), tau_mem=np.full(n, 3.0), r=np.full(n, 1.0), v_leak=np.zeros(n),
                      w_in=np.full(n, 2.0))
    thr = nir.Threshold(threshold=np.array([0.2, 0.4, 0.6]))
    delay = nir.Delay(delay=np.array([0.0, 1.0, 2.5]))  # 0, 2 and 5 steps at dt = 0.5
    scale = nir.Scale(scale=np.array([1.0, -2.0, 3.0]))
    g = graph({"li": li, "i": integ, "c": cuba, "s": scale, "d": delay, "th": thr},
              [("in", "li"), ("li", "i"), ("i", "c"), ("c", "s"), ("s", "d"), ("d", "th"), ("th", "out")], n, n)
    x = inputs(n) - 1
    y, model = run(g, x)
    assert isinstance(model, Net)  # a chain
    v_li = np.broadcast_to(li.v_leak, (B, n)).copy()
    v_i, cur, v_c = np.zeros((B, n)), np.zeros((B, n)), np.zeros((B, n))
    scaled = []
    for t in range(T):
        v_li = v_li + DT / li.tau * (li.v_leak - v_li + li.r * x[t])
        v_i = v_i + DT * integ.r * v_li
        cur = cur + DT / cuba.tau_syn * (-cur + cuba.w_in * v_i)
        v_c = v_c + DT / cuba.tau_mem * (cuba.v_leak - v_c + cuba.r * cur)
        scaled.append(v_c * scale.scale)
    scaled = np.stack(scaled)
    steps = [0, 2, 5]
    delayed = np.stack([np.stack([scaled[t - d, :, k] if t >= d else np.zeros(B) for k, d in enumerate(steps)], -1)
                        for t in range(T)])
    np.testing.assert_array_equal(y, (delayed > thr.threshold).astype(float))
    assert 0 < y.mean() < 1


def test_conv1d_sumpool_flatten_if() -> None:
    """Conv1d → IF → Flatten, and a 2-d SumPool2d → partial Flatten graph."""
    w = RNG.normal(0, 1, (4, 2, 3))
    conv = nir.Conv1d(input_shape=8, weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4))
    integ = nir.IF(r=np.full((4, 8), 1.0), v_threshold=np.full((4, 8), 1.0), v_reset=np.zeros((4, 8)))
    nodes = {"in": nir.Input(input_type=np.array([2, 8])), "conv": conv, "if": integ,
             "flat": nir.Flatten(input_type={"input": np.array([4, 8])}, start_dim=0, end_dim=-1),
             "out": nir.Output(output_type=np.array([32]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "conv"), ("conv", "if"), ("if", "flat"), ("flat", "out")],
                     type_check=False)
    x = RNG.uniform(0, 1, (T, B, 2, 8))
    y, _ = run(g, x)
    xt = torch.from_numpy(x).flatten(0, 1)
    cur = torch.nn.functional.conv1d(xt, torch.from_numpy(w), padding=1).unflatten(0, (T, B)).numpy()
    v, ref = np.zeros((B, 4, 8)), []
    for t in range(T):
        v = v + DT * cur[t]
        s = (v > 1.0).astype(float)
        v = np.where(s > 0, 0.0, v)
        ref.append(s.reshape(B, 32))
    np.testing.assert_array_equal(y, np.stack(ref))

    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    nodes = {"in": nir.Input(input_type=np.array([2, 4, 4])), "pool": pool,
             "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=1, end_dim=2),
             "out": nir.Output(output_type=np.array([2, 4]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "pool"), ("pool", "flat"), ("flat", "out")], type_check=False)
    x = RNG.integers(0, 3, (T, B, 2, 4, 4)).astype(float)
    y, _ = run(g, x)
    np.testing.assert_array_equal(y, x.reshape(T, B, 2, 2, 2, 2, 2).sum((4, 6)).reshape(T, B, 2, 4))


class Evaluator:
    """A minimal model walker (the protocol of spikeforge.reparam's ModelWalker): runs each leaf."""

    def __init__(self) -> None:
        self.forks: list[str] = []
        self.adds: list[str] = []

    def walk(self, m: torch.nn.Module, val: torch.Tensor, path: str = "") -> torch.Tensor:
        return m(val)

    def fork(self, val: torch.Tensor, path: str) -> None:
        self.forks.append(path)

    def add(self, vals: list[torch.Tensor], path: str) -> torch.Tensor:
        self.adds.append(path)
        return torch.stack(vals).sum(0)


def test_walk_with_a_model_walker_visits_in_topological_order() -> None:
    a1, a2, a3, l1, l2 = affine(4, 4), affine(4, 4), affine(4, 4), lif(4), lif(4, thr=0.8)
    g = graph({"a1": a1, "l1": l1, "a2": a2, "a3": a3, "l2": l2},
              [("in", "a1"), ("a1", "l1"), ("l1", "a2"), ("a2", "l2"), ("in", "l2"), ("l1", "a3"), ("a3", "l2"),
               ("l2", "out")], 4, 4)
    x = torch.from_numpy(inputs(4))
    model = load(g, dt=DT).double()
    walker = Evaluator()
    with torch.no_grad():
        torch.testing.assert_close(model.walk_with(walker, x), model(x), rtol=0, atol=1e-12)
    assert walker.forks == ["in", "l1"] and walker.adds == ["l2"]
    rec = graph({"a": affine(6, 3), "l": lif(6), "w": nir.Linear(weight=np.eye(6))},
                [("in", "a"), ("a", "l"), ("l", "w"), ("w", "l"), ("l", "out")], 3, 6)
    with pytest.raises(ValueError, match="recurrent edge 'w' -> 'l'"):
        load(rec, dt=DT).walk_with(Evaluator(), x)


def test_general_graph_converts_verifies_and_exports() -> None:
    """A residual imported graph goes through the one model walker: convert (exact in float64), verify,
    export to NIR and back; a recurrent graph is refused by the converter, naming the edge."""
    from spikeforge.export import graph_to_nir
    from spikeforge.reparam import Batch, InputSpec, convert_model, verify_models
    from spikeforge.reparam.walk import UnsupportedModelError

    a1, a2, a3, l1, l2 = affine(4, 4), affine(4, 4), affine(4, 4), lif(4), lif(4, thr=0.8)
    g = graph({"a1": a1, "l1": l1, "a2": a2, "a3": a3, "l2": l2},
              [("in", "a1"), ("a1", "l1"), ("l1", "a2"), ("a2", "l2"), ("in", "l2"), ("l1", "a3"), ("a3", "l2"),
               ("l2", "out")], 4, 4)
    model = load(g, dt=DT).double().eval()
    x = torch.from_numpy(inputs(4))
    converted = convert_model(model, InputSpec(shape=(4,), time_steps=T, encoding="analog"))
    assert sum(n.op == "add" for n in converted.nodes) == 1
    report = verify_models(model, converted, [Batch(x, x, torch.zeros(B, dtype=torch.long))])
    assert report["exact"] and report["neuron_only"]
    again = load(graph_to_nir(converted))
    with torch.no_grad():
        torch.testing.assert_close(again.double()(x), model(x), rtol=0, atol=0)  # spikes: exact
    rec = graph({"a": affine(6, 3), "l": lif(6), "w": nir.Linear(weight=np.eye(6))},
                [("in", "a"), ("a", "l"), ("l", "w"), ("w", "l"), ("l", "out")], 3, 6)
    with pytest.raises(UnsupportedModelError, match="recurrent edge 'w' -> 'l'"):
        convert_model(load(rec, dt=DT), InputSpec(shape=(3,), time_steps=T, encoding="analog"))
