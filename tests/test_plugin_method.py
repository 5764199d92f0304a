"""A third training method is one new package plus one registration line: this file is that package.

``EpochRecorder`` records, per epoch, what the engine told its hook; it is registered here (the one
line) and used through recipes, the engine, ``--resume``, ``load_run`` and plots without any change
to ``spikeforge.train``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from develop_helpers import synthetic_splits, tiny_recipe
from torch import nn

from spikeforge.train.engine import train
from spikeforge.train.hooks import Metadata, Method, Metrics, TrainContext, TrainHook
from spikeforge.train.recipe import RecipeError, recipe_from_dict, recipe_to_dict, to_toml
from spikeforge.train.registry import register_method, registered_methods, unregister_method
from spikeforge.train.report import plot_run
from spikeforge.train.run_files import RunDir
from spikeforge.train.rundir import load_run
from spikeforge.train.schema import Recipe

SECTION = "recorder"
PLOT = "recorder.txt"


@dataclass
class RecorderConfig:
    note: str = "hello"


class RecorderHook(TrainHook):
    def __init__(self, note: str) -> None:
        self.note = note
        self.calls: list[str] = []
        self.steps = 0
        self.batches: set[tuple[int, int]] = set()

    def before_step(self, ctx: TrainContext) -> None:
        self.calls.append("before_step")
        self.batches.add((ctx.local_batch, ctx.global_batch))

    def after_step(self, ctx: TrainContext) -> None:
        assert ctx.optimizer is not None
        self.calls.append("after_step")
        self.steps += 1

    def end_epoch(self, ctx: TrainContext) -> Metrics:
        self.calls.append(f"end_epoch {ctx.epoch}/{ctx.epochs}")
        return {f"{SECTION}.steps": self.steps}

    def metadata(self) -> Metadata:
        return {"note": self.note, "steps": self.steps}

    def state_dict(self) -> Metadata:
        return {"steps": self.steps}

    def load_state_dict(self, state: Metadata) -> None:
        self.steps = int(state["steps"])


class EpochRecorder(Method[RecorderConfig]):
    section = SECTION
    config_type = RecorderConfig

    def __init__(self) -> None:
        self.hooks: list[RecorderHook] = []
        self.saved: list[Metadata | None] = []
        self.restored: list[Metadata] = []
        self.loaded: list[nn.Module] = []

    def prepare(self, ctx: TrainContext, saved: Metadata | None = None) -> RecorderHook:
        assert ctx.optimizer is None  # prepared before the optimizer is built
        self.saved.append(saved)
        self.hooks.append(RecorderHook(self.config(ctx.recipe).note))
        return self.hooks[-1]

    def restore(self, recipe: Recipe, model: nn.Module, meta: Metadata) -> None:
        self.restored.append(meta)

    def finish_loading(self, model: nn.Module, meta: Metadata) -> None:
        self.loaded.append(model)

    def plots(self, run: RunDir) -> list[Path]:
        path = run.artifact(PLOT)
        path.write_text(" ".join(str(r[f"{SECTION}.steps"]) for r in run.read_metrics()))
        return [path]


@pytest.fixture
def recorder() -> Iterator[EpochRecorder]:
    method = EpochRecorder()
    register_method(method)  # the registration line
    try:
        yield method
    finally:
        unregister_method(SECTION)


def _recipe(epochs: int, note: str = "hello") -> Recipe:
    doc = recipe_to_dict(tiny_recipe(epochs))
    doc[SECTION] = {"note": note}
    return recipe_from_dict(doc)


@pytest.mark.filterwarnings("ignore:develop. a 2-epoch run never prunes")
def test_a_third_method_joins_training_resume_loading_and_plots(recorder: EpochRecorder, tmp_path: Path) -> None:
    splits = synthetic_splits()
    train(_recipe(2), tmp_path / "run", quiet=True, splits=splits)
    hook = recorder.hooks[-1]
    steps_per_epoch = 3  # 96 samples, batch 32
    assert hook.calls[:3] == ["before_step", "after_step", "before_step"]
    assert [c for c in hook.calls if c.startswith("end_epoch")] == ["end_epoch 1/2", "end_epoch 2/2"]
    assert hook.batches == {(32, 32)} and hook.steps == 2 * steps_per_epoch
    run = RunDir(tmp_path / "run")
    records = run.read_metrics()
    assert [r[f"{SECTION}.steps"] for r in records] == [3, 6]
    assert "develop.pruning_rate" in records[-1]  # the built-in methods still act beside it
    assert run.method_meta(SECTION) == {"note": "hello", "steps": 6}
    assert json.loads((run.checkpoint_folder() / "optim.json").read_text())["hooks"][SECTION] == [{"steps": 6}]
    assert tomllib.loads((tmp_path / "run" / "recipe.toml").read_text())[SECTION] == {"note": "hello"}
    assert (tmp_path / "run" / PLOT).read_text() == "3 6"

    train(_recipe(3), tmp_path / "run", quiet=True, splits=splits, resume=True)  # --resume
    assert recorder.saved[-1] == {"note": "hello", "steps": 6} and recorder.hooks[-1].steps == 9

    loaded = load_run(tmp_path / "run")
    assert recorder.restored[-1] == {"note": "hello", "steps": 9} and recorder.loaded[-1] is loaded.model
    assert loaded.recipe.section(RecorderConfig) == RecorderConfig("hello")
    assert [p.name for p in plot_run(tmp_path / "run")] == ["training.png", "development.png", PLOT]


def test_sections_of_a_method_follow_its_registration(recorder: EpochRecorder) -> None:
    assert [m.section for m in registered_methods()][-1] == SECTION  # acts after hybrid and develop
    recipe = _recipe(1, note="x")
    assert recipe.section(RecorderConfig) == RecorderConfig("x")
    assert recipe_from_dict(tomllib.loads(to_toml(recipe))) == recipe
    with pytest.raises(RecipeError, match=r"recorder\.bogus: unknown key"):
        recipe_from_dict({SECTION: {"bogus": 1}})
    with pytest.raises(ValueError, match="already registered"):
        register_method(EpochRecorder())
    with pytest.raises(ValueError, match="clashes"):
        register_method(type("Bad", (EpochRecorder,), {"section": "train"})())


def test_an_unregistered_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"recorder: unknown key; expected one of .*develop.*hybrid"):
        recipe_from_dict({SECTION: {"note": "x"}})
    recipe = tiny_recipe(1)
    recipe.methods[SECTION] = RecorderConfig()  # built in Python, not parsed
    with pytest.raises(ValueError, match=r"sections \['recorder'\] belong to no registered method"):
        train(recipe, tmp_path / "run", quiet=True, splits=synthetic_splits())


@pytest.mark.filterwarnings("ignore:develop. a 1-epoch run never prunes")
def test_hooks_see_the_global_batch(recorder: EpochRecorder, tmp_path: Path) -> None:
    recipe = _recipe(1)
    recipe.train.batch_size = 40  # 96 samples: 40, 40, 16
    train(recipe, tmp_path / "run", quiet=True, splits=synthetic_splits())
    assert recorder.hooks[-1].batches == {(40, 40), (16, 16)}
