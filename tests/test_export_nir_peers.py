"""Exported NIR graphs imported by other libraries: the same spikes at every neuron and unit, logits in float32.

Peers run float32 (they cast the NIR arrays), so logits agree to float32 precision and spikes agree
exactly where no membrane lies within float32 noise of its threshold (the certificate's
``float32_certified`` says whether that is proven for the data; here it is observed).

- snnTorch 1.0 (``snntorch.import_nir.import_from_nir`` on ``nirtorch.nir_to_torch``): every
  export with analog input — pure SNNs, hybrids (bit-plane and unary threshold units), residual
  networks, max pools of spikes. Its importer hard-codes ``dt = 1e-4`` (export with that ``dt``),
  needs ``v_leak = 0`` (so no pixel bias maps), one threshold per node, and no ``Scale``/``Threshold``
  nodes (the default export options avoid both). Its ``Flatten(start_dim=0)`` would also flatten a
  batch dimension, so samples run one at a time, unbatched.
- Norse 1.1 (``norse.torch.from_nir``): chain models only — its executor (``nirtorch.load``) orders
  nodes depth-first rather than topologically, so graphs where paths converge (threshold units,
  residual adds) are mis-ordered; it ignores ``R`` and ``v_reset`` (export with ``unit_r``, reset 0)
  and has no ``AvgPool2d`` (export ``pool_node = "sum"``).

Install: ``pip install 'spikeforge[interop]'`` (snnTorch + nirtorch); Norse only with
``pip install --no-deps norse`` (its metadata requires torchvision).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np
import pytest
import torch
from reparam_models import make_hybrid, random_input

from spikeforge.export import ExportOptions, graph_to_nir
from spikeforge.reparam import ConvertedModel, InputSpec, convert_model

SNNTORCH_DT = 1e-4  # snntorch.import_nir assumes this step
NORSE_DT = 1e-3
FLOAT32_TOL = 1e-5  # relative to the logits' scale


def sanitize(name: str) -> str:
    return name.replace(".", "_")


def converted(model: torch.nn.Module, shape: tuple[int, ...], coding: str, x: torch.Tensor
              ) -> tuple[object, torch.Tensor, dict[str, torch.Tensor]]:
    graph = convert_model(model, InputSpec(shape, x.shape[0]), coding)
    spikes: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        y = ConvertedModel(graph)(x, lambda n, _xs, out: spikes.__setitem__(n.name, out) if n.op in (
            "neuron", "threshold") else None)
    return graph, y, spikes


def assert_same(y: torch.Tensor, ref: torch.Tensor, got: dict[str, torch.Tensor],
                spikes: dict[str, torch.Tensor]) -> None:
    assert set(got) == {sanitize(k) for k in spikes}
    flipped = [k for k, v in spikes.items() if not torch.equal(got[sanitize(k)].double(), v)]
    assert not flipped, flipped
    scale = float(ref.abs().max())
    assert float((y.double() - ref).abs().max()) <= FLOAT32_TOL * max(scale, 1.0)


SNNTORCH_CASES = [("sdsnn", "none", "bitplane"), ("mlp", "all", "bitplane"), ("sdsnn_out", "all", "unary"),
                  ("convnet_max", "every2", "bitplane"), ("resnet19_sew", "every2", "bitplane")]


@pytest.mark.parametrize(("name", "sites", "coding"), SNNTORCH_CASES)
def test_snntorch_imports_and_reproduces_the_export(name: str, sites: str, coding: str) -> None:
    pytest.importorskip("nirtorch", reason="nirtorch not installed (pip install 'spikeforge[interop]')")
    pytest.importorskip("snntorch", reason="snnTorch not installed (pip install 'spikeforge[interop]')")
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    model, shape = make_hybrid(name, "lif_hard", sites)
    x = random_input(shape, seed=11, b=2)
    graph, ref, spikes = converted(model, shape, coding, x)
    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints its weight-scaling notes
        net = import_from_nir(graph_to_nir(graph, ExportOptions(dt=SNNTORCH_DT)))
    calls: dict[str, list[torch.Tensor]] = {}
    for mod_name, mod in net.named_modules():
        if sanitize(mod_name) in {sanitize(k) for k in spikes}:
            mod.register_forward_hook(lambda _m, _i, o, k=mod_name: calls.setdefault(k, []).append(
                (o[0] if isinstance(o, tuple) else o).detach()))
    outs = []
    with torch.no_grad():
        for b in range(x.shape[1]):  # one sample at a time (see the module docstring)
            utils.reset(net)
            steps = [net(xt) for xt in x[:, b].float()]  # nirtorch returns (output, executor state)
            outs.append(torch.stack([o[0] if isinstance(o, tuple) else o for o in steps]))
    y = torch.stack(outs, 1)
    t, bsz = x.shape[:2]
    got = {k: torch.stack(v).unflatten(0, (bsz, t)).transpose(0, 1) for k, v in calls.items()}  # → [T, B, ...]
    assert_same(y, ref, got, spikes)


@pytest.mark.parametrize(("name", "sites"), [("sdsnn", "none"), ("mlp", "none")])
def test_norse_imports_chain_exports(name: str, sites: str) -> None:
    pytest.importorskip("nirtorch", reason="nirtorch not installed (pip install 'spikeforge[interop]')")
    norse = pytest.importorskip("norse.torch", reason="Norse not installed (pip install --no-deps norse)")
    model, shape = make_hybrid(name, "lif_hard", sites)
    x = random_input(shape, seed=11, b=2)
    graph, ref, _ = converted(model, shape, "bitplane", x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        logging.disable(logging.WARNING)
        try:
            net = norse.from_nir(graph_to_nir(graph, ExportOptions(dt=NORSE_DT, pool_node="sum", unit_r=True)),
                                 dt=NORSE_DT)
        finally:
            logging.disable(logging.NOTSET)
    outs = []
    with torch.no_grad():
        for b in range(x.shape[1]):
            state, steps = None, []
            for xt in x[:, b].float():
                o, state = net(xt, state)
                steps.append(o)
            outs.append(torch.stack(steps))
    y = torch.stack(outs, 1)
    assert np.isfinite(y.numpy()).all()
    assert float((y.double() - ref).abs().max()) <= FLOAT32_TOL * max(float(ref.abs().max()), 1.0)
