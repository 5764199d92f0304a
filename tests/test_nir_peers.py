"""Graphs written by other libraries' NIR exporters compute, in spikeforge, what they computed there.

``tests/data/nir/<case>.nir`` + ``<case>.npz`` (input x, the library's own output y, the producer
profile) come from ``python bench/nir_peer_graphs.py`` with snnTorch 1.0.0, Norse 1.1.0,
Sinabs 3.1.3 and Rockpool 3.1.0 installed. Spike outputs must match exactly; analog outputs (Norse's
leaky-integrator readout, Rockpool's ``ExpSynTorch``) to float32 rounding (1e-6 relative): Norse
computes ``v + dt/τ·(x + v_leak − v)``, Rockpool ``(v + x)·a``, spikeforge ``a·v + b·x + c``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from spikeforge.nir import load  # noqa: E402
from spikeforge.nir.graphnet import GraphNet  # noqa: E402
from spikeforge.nir.neuron import NirNeuron  # noqa: E402
from spikeforge.nir.nodes import dt_from_resistance  # noqa: E402
from spikeforge.nir.semantics import PROFILES  # noqa: E402

DATA = Path(__file__).parent / "data" / "nir"
CASES = sorted(p.stem for p in DATA.glob("*.npz"))
ANALOG_TOLERANCE = 1e-6


def run_case(name: str) -> tuple[np.ndarray, np.ndarray, torch.nn.Module]:
    d = np.load(DATA / f"{name}.npz")
    model = load(DATA / f"{name}.nir", profile=str(d["profile"]))
    with torch.no_grad():
        z = model(torch.from_numpy(d["x"])).numpy()
    return z, d["y"], model


def test_cases_present() -> None:
    libraries = {str(np.load(DATA / f"{c}.npz")["library"]) for c in CASES}
    assert libraries == {"snntorch", "norse", "sinabs", "rockpool"}
    assert sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file()) < 1_000_000


@pytest.mark.parametrize("name", CASES)
def test_peer_graph_reproduces_library_output(name: str) -> None:
    z, y, _ = run_case(name)
    assert z.shape == y.shape
    assert np.count_nonzero(y) > 0, "the case must exercise spikes"
    spikes = np.array_equal(y, np.round(y)) and y.min() >= 0
    if spikes:
        np.testing.assert_array_equal(z, y)
    else:
        np.testing.assert_allclose(z, y, rtol=0, atol=ANALOG_TOLERANCE * max(1.0, float(np.abs(y).max())))


def test_recurrent_snntorch_graph_is_a_graph_module() -> None:
    _, _, model = run_case("snntorch_recurrent")
    assert isinstance(model, GraphNet)  # RLeaky: a nested graph with a recurrent edge


def test_per_neuron_parameters_stay_per_neuron() -> None:
    _, _, model = run_case("snntorch_per_neuron")
    sites = [m for m in model.modules() if isinstance(m, NirNeuron)]
    # learned β and θ per neuron (the gain dt·R/τ too: snnTorch's R = τ/dt is rounded per neuron in float32)
    assert {"decay", "threshold"} <= set(sites[0].coefs.per_neuron())
    assert sites[0].coefs.get("decay").shape == (20,)


def test_sinabs_multi_spike_outputs() -> None:
    """Sinabs' IAF emits several spikes per step (MultiSpike) and subtracts θ per spike."""
    z, y, _ = run_case("sinabs_cnn")
    np.testing.assert_array_equal(z, y)
    model = load(DATA / "sinabs_cnn.nir", profile="sinabs")
    site = next(m for m in model.modules() if isinstance(m, NirNeuron))
    assert (site.fire, site.reset, site.spikes) == ("ge", "subtract", "multi")


def test_generic_profile_needs_dt_for_snntorch_graph() -> None:
    with pytest.raises(ValueError, match="does not record.*--dt"):
        load(DATA / "snntorch_ff.nir")
    d = np.load(DATA / "snntorch_ff.npz")
    model = load(DATA / "snntorch_ff.nir", dt=1e-4)  # the spec's reading with snnTorch's dt: the same numbers
    with torch.no_grad():
        np.testing.assert_array_equal(model(torch.from_numpy(d["x"])).numpy(), d["y"])


# ---------------------------------------------------------------- Rockpool: dt recorded in R, capped multi-spikes


def test_rockpool_graphs_multi_spike_and_record_their_dt() -> None:
    """Rockpool's LIFTorch emits several spikes per step; each graph's dt (1 ms, 0.5 ms) comes from R."""
    z, y, model = run_case("rockpool_lif")
    assert y.max() >= 2
    np.testing.assert_array_equal(z, y)
    site = next(m for m in model.modules() if isinstance(m, NirNeuron))
    assert (site.fire, site.reset, site.spikes, site.max_spikes) == ("ge", "subtract", "multi", 2.0**16)
    d = np.load(DATA / "rockpool_neuron_synapse.npz")
    given = load(DATA / "rockpool_neuron_synapse.nir", profile="rockpool", dt=5e-4)
    with torch.no_grad():
        out = given(torch.from_numpy(d["x"])).numpy()
    np.testing.assert_allclose(out, d["y"], rtol=0, atol=ANALOG_TOLERANCE * float(np.abs(d["y"]).max()))
    with pytest.raises(ValueError, match=r"rockpool_neuron_synapse.nir: node '1_LIFNeuronTorch'.*records dt = 0.0005"):
        load(DATA / "rockpool_neuron_synapse.nir", profile="rockpool", dt=1e-3)


def test_dt_from_resistance_inverts_rockpools_r() -> None:
    tau = np.array([1e-3, 2e-3, 0.02, 0.5, 3.0])
    for dt in (1e-4, 1e-3, 0.05):
        r = tau * np.exp(-dt / tau) / dt  # rockpool/nn/modules/torch/nir.py, CubaLIF/LIF/LI writers
        np.testing.assert_allclose(dt_from_resistance(tau, r), dt, rtol=1e-12)


def test_rockpool_graph_with_mixed_dt_is_refused() -> None:
    graph = nir.read(DATA / "rockpool_lif.nir", type_check=False)
    node = graph.nodes["1_LIFTorch"]
    node.r = np.array(node.r, dtype=np.float64)
    node.r[0] = node.tau_mem[0] * np.exp(-2e-3 / node.tau_mem[0]) / 2e-3  # one neuron written with dt = 2 ms
    with pytest.raises(ValueError, match="'1_LIFTorch': R = .* different time steps"):
        load(graph, profile="rockpool")
    node.r[:] = -1.0
    with pytest.raises(ValueError, match="tau_mem and r must be > 0"):
        load(graph, profile="rockpool")


def test_multi_spike_cap() -> None:
    """``max_spikes`` caps the spikes of one step (Rockpool's ``max_spikes_per_dt``); θ is subtracted per spike."""
    values = {"decay": 1.0, "gain": 1.0, "bias": 0.0, "threshold": 0.5, "v_reset": 0.0, "rest": 0.0}
    x = torch.tensor([[[0.3, 1.2, 3.6]]])
    for cap, spikes, left in ((None, [0, 2, 7], [0.3, 0.2, 0.1]), (3.0, [0, 2, 3], [0.3, 0.2, 2.1])):
        neuron = NirNeuron((3,), values, fire="ge", reset="subtract", spikes="multi", max_spikes=cap)
        s, v = neuron.run(x)
        assert s.flatten().tolist() == spikes
        np.testing.assert_allclose(v.flatten().numpy(), left, atol=1e-6)
    with pytest.raises(ValueError, match="max_spikes must be"):
        dataclasses.replace(PROFILES["rockpool"], max_spikes=0.5)
