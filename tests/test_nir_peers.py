"""Graphs written by other libraries' NIR exporters compute, in spikeforge, what they computed there.

``tests/data/nir/<case>.nir`` + ``<case>.npz`` (input x, the library's own output y, the producer
profile) come from ``python bench/nir_peer_graphs.py`` with snnTorch 1.0.0, Norse 1.1.0 and
Sinabs 3.1.3 installed. Spike outputs must match exactly; analog outputs (Norse's leaky-integrator
readout) to float32 rounding (1e-6): Norse computes ``v + dt/τ·(x + v_leak − v)``, spikeforge
``a·v + b·x + c``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nir")

from spikeforge.nir import load  # noqa: E402
from spikeforge.nir.graphnet import GraphNet  # noqa: E402
from spikeforge.nir.neuron import NirNeuron  # noqa: E402

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
    assert libraries == {"snntorch", "norse", "sinabs"}
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
