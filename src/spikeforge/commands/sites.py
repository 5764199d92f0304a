"""``spikeforge sites``: a recipe's neuron sites and the sites its hybrid policy selects."""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
from torch import nn

from ..train.schema import Recipe

PROBE_TIME_STEPS = 1  # the probe forward pass uses one time step and one sample
PROBE_BATCH = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", required=True,
                   help="packaged recipe name (see `spikeforge recipes`) or a TOML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set hybrid.sites=last:2 (repeatable)")
    p.add_argument("--data", default=None,
                   help="dataset folder; needed to run an auto:BUDGET policy's calibration")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto policy only)")


def site_table(model: nn.Module, in_channels: int, input_size: int) -> list[dict[str, Any]]:
    """Name, kind, per-sample output shape and neuron count of every site (probe forward pass)."""
    from ..models import neuron_sites

    sites = neuron_sites(model)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [m.register_forward_hook(
        lambda _m, _i, out, n=name: shapes.__setitem__(n, tuple(out.shape[2:]))) for name, m in sites.items()]
    dev = next((t.device for t in model.parameters()), torch.device("cpu"))
    x = torch.zeros(PROBE_TIME_STEPS, PROBE_BATCH, in_channels, input_size, input_size, device=dev)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [{"name": n, "kind": type(m).__name__, "shape": shapes.get(n, ()),
             "neurons": math.prod(shapes[n]) if n in shapes else 0} for n, m in sites.items()]


def format_table(rows: list[dict[str, Any]], selected: list[str] | None) -> str:
    lines = [f"{'#':>3}  {'site':<20} {'kind':<12} {'output shape':<16} {'neurons':>9}  hybrid"]
    for i, r in enumerate(rows):
        shape = "x".join(str(d) for d in r["shape"])
        mark = "" if selected is None else ("ReLU" if r["name"] in selected else "-")
        lines.append(f"{i:>3}  {r['name']:<20} {r['kind']:<12} {shape:<16} {r['neurons']:>9}  {mark}")
    return "\n".join(lines)


def _auto_choice(recipe: Recipe, data_root: str, device: str) -> tuple[list[str], dict[str, Any]]:
    """Run the ``auto:`` calibration exactly as training would start it; returns the sites and the metadata."""
    from ..hybrid.extension import METHOD
    from ..models import build_model
    from ..train.devices import resolve_device
    from ..train.distributed import Distributed
    from ..train.hooks import TrainContext
    from ..train.session import fit_recipe_to_data, load_training_data

    dev = resolve_device(device if device != "auto" else recipe.train.device)
    splits = load_training_data(recipe, data_root)
    fit_recipe_to_data(recipe, splits.info)
    torch.manual_seed(recipe.train.seed)  # the same initial weights the engine would train
    model = build_model(recipe.model).to(dev)
    hook = METHOD.prepare(TrainContext(recipe, model, splits, dev, Distributed()))
    return hook.sites, hook.metadata()


def run(args: argparse.Namespace) -> int:
    from ..hybrid.config import HybridConfig
    from ..hybrid.policy import parse_spec, select_sites
    from ..models import build_model
    from ..train.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    model = build_model(recipe.model)
    rows = site_table(model, recipe.model.in_channels, recipe.model.input_size)
    hybrid = recipe.section(HybridConfig)
    if hybrid is None:
        print(format_table(rows, None))
        print(f"\nrecipe {recipe.name!r} has no [hybrid] section: a pure SNN ({len(rows)} spiking sites)")
        return 0
    if not parse_spec(hybrid.sites).needs_data:
        chosen = select_sites(model, hybrid.sites)
        print(format_table(rows, chosen))
        print(f"\nhybrid policy {hybrid.sites!r} (levels {hybrid.levels}) selects {len(chosen)} of "
              f"{len(rows)} sites: {', '.join(chosen) or '(none: pure SNN)'}")
        return 0
    if args.data is None:
        print(format_table(rows, None))
        print(f"\nhybrid policy {hybrid.sites!r} is data-driven: pass --data DATASET_FOLDER to run its "
              f"calibration on {hybrid.calibration_samples} held-out training samples")
        return 0
    chosen, meta = _auto_choice(recipe, args.data, args.device)
    print(format_table(rows, chosen))
    auto = meta.get("auto", {})
    print(f"\nhybrid policy {hybrid.sites!r} (levels {hybrid.levels}) selects {len(chosen)} of {len(rows)} "
          f"sites: {', '.join(chosen) or '(none)'}")
    print(f"calibration: {meta['calibration_samples']} held-out samples; pure SNN loss "
          f"{auto.get('base_loss', 0):.4f}, {auto.get('base_sops', 0):.4g} SOPs/sample; "
          f"budget +{auto.get('budget_sops', 0):.4g} SOPs/sample")
    for i, rnd in enumerate(auto.get("rounds", []), start=1):
        print(f"round {i}: " + "; ".join(
            f"{c['site']} benefit {c['benefit']:+.4f} cost {c['cost']:+.4g}"
            + ("" if c["feasible"] else " (infeasible)") for c in rnd))
    return 0
