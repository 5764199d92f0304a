"""Reading NIR: semantics profiles, and bad input refused with one line naming the file and the node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from spikeforge.nir import PROFILES, GraphSpec, Semantics, load, resolve, spec_and_tensors  # noqa: E402
from spikeforge.nir.build import read_spec  # noqa: E402


def chain(*nodes: object, n_in: int = 4, n_out: int = 3) -> nir.NIRGraph:
    names = [f"n{i}" for i in range(len(nodes))]
    all_nodes = {"input": nir.Input(input_type=np.array([n_in])), **dict(zip(names, nodes, strict=True)),
                 "output": nir.Output(output_type=np.array([n_out]))}
    order = ["input", *names, "output"]
    return nir.NIRGraph(nodes=all_nodes, edges=list(zip(order, order[1:], strict=False)), type_check=False)


def lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))


def test_profiles_and_resolution() -> None:
    assert resolve({"producer": "spikeforge", "dt": 0.25}) == Semantics(dt=0.25, fire="ge", profile="spikeforge")
    assert resolve({}) == PROFILES["nir"] and PROFILES["nir"].dt is None
    assert resolve({}, "snntorch", reset="subtract").reset == "subtract"
    assert resolve({}, "norse").tau_scale == 1000.0
    with pytest.raises(ValueError, match="unknown NIR producer profile"):
        resolve({}, "brian")
    with pytest.raises(ValueError, match="fire must be one of"):
        Semantics(fire="gte")
    with pytest.raises(ValueError, match="dt must be"):
        Semantics(dt=float("nan"))
    with pytest.raises(ValueError, match="multi.*subtract"):
        Semantics(spikes="multi")
    assert Semantics.from_dict(PROFILES["sinabs"].to_dict()) == PROFILES["sinabs"]


def test_spec_json_round_trip() -> None:
    g = chain(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), lif(3))
    spec, tensors = read_spec(g, Semantics(dt=1.0))
    again = GraphSpec.from_json(spec.to_json())
    assert again == spec and set(tensors) == {"n0.weight", "n0.bias"}
    with pytest.raises(ValueError, match="model.graph: not a valid imported NIR graph"):
        GraphSpec.from_json('{"format": "other"}')


def test_missing_dt_names_the_node() -> None:
    g = chain(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), lif(3))
    with pytest.raises(ValueError, match="node 'n1' depends on the time step"):
        load(g)
    assert isinstance(load(g, dt=1.0), torch.nn.Module)


def test_unknown_node_type_is_refused_naming_it() -> None:
    class Spline:  # any node type the importer does not know
        pass

    g = chain(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)))
    g.nodes["n0"] = Spline()
    with pytest.raises(ValueError, match="node 'n0' has type Spline.*supported: Affine"):
        load(g, dt=1.0)


def test_shape_mismatches_name_the_node() -> None:
    with pytest.raises(ValueError, match="node 'n0': weight \\[3, 5\\] expects 5 input features, gets shape \\[4\\]"):
        load(chain(nir.Affine(weight=np.ones((3, 5)), bias=np.zeros(3))), dt=1.0)
    bad_lif = nir.LIF(tau=np.full(5, 2.0), r=np.ones(5), v_leak=np.zeros(5), v_threshold=np.ones(5))
    with pytest.raises(ValueError, match="node 'n1': tau has shape \\[5\\].*input shape \\[3\\]"):
        load(chain(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), bad_lif), dt=1.0)
    with pytest.raises(ValueError, match="output node 'output' declares shape \\[3\\] but receives \\[2\\]"):
        load(chain(nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2))), dt=1.0)
    g = chain(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)))
    g.edges.append(("input", "output"))  # output sums [3] and [4]
    with pytest.raises(ValueError, match="node 'output' sums inputs of different shapes"):
        load(g, dt=1.0)


def test_graph_structure_errors() -> None:
    g = chain(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)))
    g.nodes["input2"] = nir.Input(input_type=np.array([4]))
    with pytest.raises(ValueError, match="2 Input and 1 Output"):
        load(g)
    g = chain(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)))
    g.nodes["lonely"] = lif(3)
    g.edges.append(("lonely", "output"))
    with pytest.raises(ValueError, match="not reachable from the input"):
        load(g, dt=1.0)
    g = chain(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)))
    g.edges.append(("n0", "ghost"))
    with pytest.raises(ValueError, match="names node 'ghost'"):
        load(g)


def test_bad_files_give_one_line(tmp_path: Path) -> None:
    text = tmp_path / "model.nir"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="model.nir: not a NIR file"):
        load(text)
    with pytest.raises(ValueError, match="missing.nir: file not found"):
        load(tmp_path / "missing.nir")
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.arange(3))
    with pytest.raises(ValueError, match="other.h5: not a readable NIR graph"):
        load(other)
    good = tmp_path / "good.nir"
    nir.write(good, chain(nir.Affine(weight=np.ones((3, 5)), bias=np.zeros(3))))
    with pytest.raises(ValueError, match="good.nir: node 'n0': weight"):
        spec_and_tensors(good)


def test_model_kind_nir_checks_its_graph() -> None:
    from spikeforge.models import ModelConfig, build_model

    with pytest.raises(ValueError, match="model.graph"):
        build_model(ModelConfig(name="nir"))
    spec, tensors = read_spec(chain(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), n_out=3), Semantics())
    model = build_model(ModelConfig(name="nir", graph=spec.to_json(), num_classes=3))
    model.load_state_dict(tensors)
    assert model(torch.ones(2, 1, 4)).shape == (2, 1, 3)
    with pytest.raises(ValueError, match="the graph has 3 outputs, the recipe's data 10 classes"):
        build_model(ModelConfig(name="nir", graph=spec.to_json(), num_classes=10))
