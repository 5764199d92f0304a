"""The shape of the package: the engine knows no method, modules import without circles, no hidden state."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "spikeforge"
METHOD_PACKAGES = ("spikeforge.hybrid", "spikeforge.develop", "spikeforge.methods")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, path: Path, node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if isinstance(node, ast.ImportFrom):
        target = _resolve(module, path.name == "__init__.py", node)
        return {target, *(f"{target}.{a.name}" for a in node.names)}
    return set()


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """spikeforge modules that ``path`` imports (``from pkg import sub`` counts ``pkg.sub`` when it is a module).

    Inside functions, a submodule reading a name of its own package (``from . import resolve_root`` in
    ``data/fingerprint.py``) runs after the package is initialised and is not counted.
    """
    module, tree = _module_name(path), ast.parse(path.read_text())
    found = {t for node in tree.body for t in _targets(module, path, node)}
    if not top_level_only:
        inner = {t for node in ast.walk(tree) if node not in tree.body for t in _targets(module, path, node)}
        found |= {t for t in inner if not module.startswith(t + ".")}
    known = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in known and m != module}


def test_import_graph_has_no_cycles() -> None:
    """Imports — at module level and inside functions — form a DAG (the registry's one dynamic import of
    ``spikeforge.methods`` is the plug-in point, by design)."""
    graph = {_module_name(p): _imports(p, top_level_only=False) for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("where", ["train", "plots.py"])
def test_engine_and_plots_import_no_method_package(where: str) -> None:
    """Not even inside functions: methods register themselves (spikeforge.methods), the engine asks the registry."""
    files = sorted((PACKAGE / where).rglob("*.py")) if (PACKAGE / where).is_dir() else [PACKAGE / where]
    for path in files:
        bad = sorted(m for m in _imports(path, top_level_only=False) if m.startswith(METHOD_PACKAGES))
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def _fresh_interpreter(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_importing_the_engine_loads_no_method_and_no_pyplot() -> None:
    _fresh_interpreter(
        "import sys\n"
        "import spikeforge.data, spikeforge.train\n"
        "assert 'spikeforge.train.engine' not in sys.modules  # the package's names load on first use\n"
        "import spikeforge.train.engine, spikeforge.train.rundir, spikeforge.plots\n"
        "assert all(getattr(spikeforge.train, n) is not None for n in spikeforge.train.__all__)\n"
        f"loaded = [m for m in sys.modules if m.startswith({METHOD_PACKAGES!r}) or m == 'matplotlib.pyplot']\n"
        "assert not loaded, loaded\n")


def test_plotting_chooses_no_matplotlib_backend(tmp_path: Path) -> None:
    """Figures are drawn without pyplot: a user's backend is left as it was."""
    _fresh_interpreter(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import matplotlib
        before = dict.__getitem__(matplotlib.rcParams, "backend")  # raw: reading it must not resolve it
        from spikeforge.plots import plot_training
        recs = [{{"epoch": e, "train_loss": 1.0 / e, "test_loss": 1.0, "train_accuracy": 0.5, "test_accuracy": 0.5,
                  "firing_rates": {{"sn1": 0.1}}}} for e in (1, 2)]
        path = plot_training(recs, Path({str(tmp_path / "training.png")!r}))
        assert path.stat().st_size > 0
        assert "matplotlib.pyplot" not in sys.modules
        assert dict.__getitem__(matplotlib.rcParams, "backend") == before, before
        """))


def test_spiking_relu_is_a_plain_module() -> None:
    """No collectives inside SpikingReLU: its module imports nothing of the training package or torch.distributed."""
    imported = _imports(PACKAGE / "hybrid" / "spiking_relu.py", top_level_only=False)
    assert not any(m.startswith("spikeforge.train") for m in imported)
    assert "torch.distributed" not in (PACKAGE / "hybrid" / "spiking_relu.py").read_text()
