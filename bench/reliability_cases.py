"""A battery of single cases tried as a new user would, through the ``spikeforge`` command line.

Each case runs one command in a fresh process (``python -m spikeforge.cli ...``) in a scratch
folder holding tiny datasets in the official formats and a few small trained runs, and its outcome
is classified:

- ``clear error``: the case should fail and did, with exit code 1 (2 for usage errors) and one
  ``spikeforge <command>: error: ...`` line that is not reported as an internal error;
- ``correct``: the case should succeed (possibly with warnings) and did, and its check passed;
- ``traceback``: a Python traceback reached the user;
- ``silently wrong``: exit code 0 where an error was due, or a check of the result failed;
- ``data lost``: a file that existed before the command (a run, a dataset, a user's file) changed;
- ``unclear error``: it failed, but not with one error line (or with an internal error).

``python bench/reliability_cases.py --out /tmp/cases`` prints one line per case and a table per
class; ``--json FILE`` writes every case with its output. The case list mirrors issue 11's classes
(recipes and arguments, data, outputs, non-finite numbers, run directories and resume, locking,
the command line); kill -9 trials are ``bench/crash_harness.py``'s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_data import build_workspace  # noqa: E402

from spikeforge.atomic import write_json  # noqa: E402
from spikeforge.cli import COMMANDS  # noqa: E402
from spikeforge.train.checkpoint import load_tensors, save_tensors  # noqa: E402
from spikeforge.train.checkpoint_store import CheckpointStore, Manifest, sha256_file  # noqa: E402
from spikeforge.train.run_files import RunDir  # noqa: E402

TIMEOUT_S = 600
SOURCE_ENV: dict[str, str] = {}  # --source: run the commands of another checkout (e.g. the main branch, "before")
OUTCOMES = ("clear error", "correct", "traceback", "silently wrong", "data lost", "unclear error")
GOOD = ("clear error", "correct")
Check = Callable[["Ctx", "Result"], "str | None"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Case:
    cls: str  # recipes | data | outputs | numerics | resume | locking | cli
    name: str
    args: list[str]  # after `spikeforge`; "{x}" is replaced by ctx paths
    expect: str = "error"  # "error" | "usage" | "ok" | "interrupt" | "traceback"
    setup: Callable[[Ctx], None] | None = None
    check: Check | None = None
    protect: list[str] = field(default_factory=list)  # ctx path names whose files must not change
    limit_file_bytes: int = 0  # > 0: RLIMIT_FSIZE (writes beyond fail as on a full disk)
    interrupt_after: float = 0.0  # > 0: SIGINT after this many seconds


class Ctx:
    """The scratch folder: datasets, trained runs and per-case paths (``ctx.p("name")``)."""

    def __init__(self, root: Path, workspace: dict[str, Path]) -> None:
        self.root, self.workspace = root, dict(workspace)
        self.paths: dict[str, Path] = {}  # this case's own paths (set by its setup)
        self.case_dir = root
        self.shared: dict[str, Path] = {}  # paths shared by several cases (the running training)

    def start_case(self, case_dir: Path) -> None:
        self.case_dir, self.paths = case_dir, {**self.workspace, **self.shared}

    def p(self, name: str) -> Path:
        if name == "case":
            return self.case_dir
        return self.paths[name] if name in self.paths else self.case_dir / name

    def copy(self, src: str, name: str) -> Path:
        dst = self.case_dir / name
        shutil.copytree(self.p(src), dst)
        self.paths[name] = dst
        return dst

    def fmt(self, arg: str) -> str:
        return re.sub(r"\{(\w[\w-]*)\}", lambda m: str(self.p(m.group(1))), arg)


def snapshot(path: Path) -> dict[str, str]:
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and not p.name.endswith(".png")}


def run_case(case: Case, ctx: Ctx) -> dict[str, Any]:
    ctx.start_case(ctx.root / "cases" / re.sub(r"\W+", "-", f"{case.cls}-{case.name}")[:80])
    ctx.case_dir.mkdir(parents=True)
    if case.setup:
        case.setup(ctx)
    before = {n: snapshot(ctx.p(n)) for n in case.protect}
    cmd = [sys.executable, "-m", "spikeforge.cli", *(ctx.fmt(a) for a in case.args)]
    env = {**os.environ, **SOURCE_ENV, "OMP_NUM_THREADS": "1"}
    env.pop("SPIKEFORGE_DEBUG", None)

    def limits() -> None:
        if case.limit_file_bytes:
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.limit_file_bytes, case.limit_file_bytes))

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ctx.case_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limits)
    if case.interrupt_after:
        try:
            proc.wait(timeout=case.interrupt_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT_S)
    res = Result(proc.returncode, out, err)
    lost = [n for n in case.protect if snapshot(ctx.p(n)) != before[n]]
    outcome, note = classify(case, res, ctx, lost)
    return {"class": case.cls, "case": case.name, "command": "spikeforge " + " ".join(case.args),
            "expect": case.expect, "outcome": outcome, "note": note, "code": res.code,
            "stderr": err.strip()[-600:], "seconds": round(time.perf_counter() - start, 1)}


def classify(case: Case, res: Result, ctx: Ctx, lost: list[str]) -> tuple[str, str]:
    lines = [line for line in res.err.splitlines() if line.strip()]
    command = case.args[0] if case.args else ""
    prefix = "spikeforge: error:" if case.expect == "usage" and command not in COMMANDS else \
        f"spikeforge {command}: error:"
    errors = [line for line in lines if line.startswith(prefix)]
    if "Traceback (most recent call last)" in res.err and case.expect != "traceback":
        return "traceback", lines[-1] if lines else ""
    if lost:
        return "data lost", f"changed: {lost}"
    if case.expect in ("error", "usage"):
        if res.code == 0:
            return "silently wrong", "exit 0 where an error was due"
        wanted = 2 if case.expect == "usage" else 1
        if res.code == wanted and len(errors) == 1 and errors[0] == lines[-1] and "internal error" not in errors[0]:
            problem = case.check(ctx, res) if case.check else None
            return ("silently wrong", problem) if problem else ("clear error", errors[0])
        return "unclear error", f"exit {res.code}: {lines[-3:]}"
    if case.expect == "interrupt":
        ok = res.code == 130 and lines and "interrupted" in lines[-1] and "--resume" in lines[-1]
        return ("correct", lines[-1]) if ok else ("unclear error", f"exit {res.code}: {lines[-2:]}")
    if case.expect == "traceback":  # --debug asked for it
        ok = "Traceback (most recent call last)" in res.err and res.code != 0
        return ("correct", "traceback shown on request") if ok else ("unclear error", f"exit {res.code}")
    if res.code != 0:
        return "unclear error", f"exit {res.code}: {lines[-1] if lines else ''}"
    problem = case.check(ctx, res) if case.check else None
    return ("silently wrong", problem) if problem else ("correct", lines[-1] if lines else "")


# -- checks ------------------------------------------------------------------------------------------
def finite_weights(run: str) -> Check:
    def check(ctx: Ctx, _res: Result) -> str | None:
        tensors = load_tensors(RunDir(ctx.p(run)).weights_path())
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        return f"non-finite weights saved: {bad[:3]}" if bad else None
    return check


def committed(run: str, epoch: int | None) -> Check:
    def check(ctx: Ctx, _res: Result) -> str | None:
        got = RunDir(ctx.p(run)).committed_epoch()
        return None if got == epoch else f"committed epoch {got}, expected {epoch}"
    return check


def json_field(key: str, want: Callable[[Any], bool], what: str) -> Check:
    def check(_ctx: Ctx, res: Result) -> str | None:
        try:
            value = json.loads(res.out.strip().splitlines()[-1])[key]
        except (ValueError, IndexError, KeyError) as e:
            return f"no JSON {key}: {e}"
        return None if want(value) else f"{key} = {value!r}, expected {what}"
    return check


def stderr_has(text: str) -> Check:
    def check(_ctx: Ctx, res: Result) -> str | None:
        return None if text in res.err else f"stderr lacks {text!r}"
    return check


def all_of(*checks: Check) -> Check:
    def check(ctx: Ctx, res: Result) -> str | None:
        return next((p for c in checks if (p := c(ctx, res))), None)
    return check


def not_created(name: str) -> Check:
    def check(ctx: Ctx, _res: Result) -> str | None:
        return f"{name} was created" if ctx.p(name).exists() else None
    return check


def accuracy_of_epoch(run: str, best: bool) -> Check:
    """evaluate's accuracy equals the recorded test accuracy of the epoch it reports (same data, same model)."""
    def check(ctx: Ctx, res: Result) -> str | None:
        ev = json.loads(res.out.strip().splitlines()[-1])
        records = {r["epoch"]: r["test_accuracy"] for r in RunDir(ctx.p(run)).read_metrics()}
        if best and ev["epoch"] != max(records, key=lambda e: (records[e], -e)):
            return f"--best evaluated epoch {ev['epoch']}, best is {max(records, key=lambda e: (records[e], -e))}"
        return None if abs(ev["accuracy"] - records[ev["epoch"]]) < 1e-9 else (
            f"accuracy {ev['accuracy']} != recorded {records[ev['epoch']]} for epoch {ev['epoch']}")
    return check


# -- setups ------------------------------------------------------------------------------------------
def copy_of(src: str, name: str = "run") -> Callable[[Ctx], None]:
    return lambda ctx: ctx.copy(src, name) and None


def poison_weights(src: str, name: str = "run", optimizer: bool = False) -> Callable[[Ctx], None]:
    """A copy of ``src`` whose latest weights (or optimizer state) hold NaN, manifest kept consistent."""
    def setup(ctx: Ctx) -> None:
        run = ctx.copy(src, name)
        folder = RunDir(run).checkpoint_folder()
        path = folder / (RunDir.OPTIM_WEIGHTS if optimizer else RunDir.MODEL_WEIGHTS)
        tensors = load_tensors(path)
        key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
        tensors[key].view(-1)[0] = float("nan")
        save_tensors(path, tensors)
        manifest = Manifest.read(folder / CheckpointStore.MANIFEST)
        manifest.files[path.name] = (path.stat().st_size, sha256_file(path))
        write_json(folder / CheckpointStore.MANIFEST, manifest.to_dict())
    return setup


def flat_layout(src: str, name: str = "run", mismatch: bool = False) -> Callable[[Ctx], None]:
    """A copy of ``src`` in the layout of earlier versions (model.* and optim.* at the top)."""
    def setup(ctx: Ctx) -> None:
        run = ctx.copy(src, name)
        folder = RunDir(run).checkpoint_folder()
        for f in RunDir.RESUME_FILES:
            shutil.copy2(folder / f, run / f)
        shutil.rmtree(run / RunDir.CHECKPOINTS)
        (run / RunDir.DATA).unlink()
        if mismatch:  # a crash between model.json and optim.json of an older version
            meta = json.loads((run / RunDir.MODEL_META).read_text())
            meta["epoch"] += 1
            (run / RunDir.MODEL_META).write_text(json.dumps(meta))
    return setup


def damage(src: str, what: str, name: str = "run") -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        run = ctx.copy(src, name)
        store = RunDir(run).store
        if what == "latest-truncated":
            path = RunDir(run).checkpoint_folder() / RunDir.MODEL_WEIGHTS
            path.write_bytes(path.read_bytes()[:-16])
        elif what == "all-truncated":
            for stored in store.committed():
                path = stored.folder / RunDir.MODEL_WEIGHTS
                path.write_bytes(path.read_bytes()[:-16])
        elif what == "leftovers":
            (run / ".recipe.toml.abc.tmp").write_text("half")
            (run / RunDir.CHECKPOINTS / ".epoch-0009.tmp-1").mkdir()
            (run / RunDir.CHECKPOINTS / "epoch-0009").mkdir()
            with open(run / RunDir.METRICS, "a") as f:
                f.write('{"epoch": 9, "tr')
    return setup


FULL_DISK_BYTES = 20_000  # RLIMIT_FSIZE: the first checkpoint's weights do not fit


def full_disk_first(ctx: Ctx) -> None:
    """The training of the case before: stopped by a full disk at its first checkpoint."""
    cmd = [sys.executable, "-m", "spikeforge.cli", *(ctx.fmt(a) for a in [*TRAIN[:-4], "--out", "{case}/run",
                                                                          "--epochs", "2"])]
    subprocess.run(cmd, cwd=ctx.case_dir, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, FULL_DISK_BYTES)))
    ctx.paths["run"] = ctx.case_dir / "run"


def lock_file(src: str, host: str, name: str = "run") -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        run = ctx.copy(src, name)
        pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                 text=True, check=True).stdout)
        (run / RunDir.LOCK).write_text(json.dumps({"pid": pid, "host": host or os.uname().nodename,
                                                   "started": "2026-11-28T10:00:00", "command": "spikeforge train"}))
    return setup


def binary_file(name: str) -> Callable[[Ctx], None]:
    return lambda ctx: (ctx.case_dir / name).write_bytes(bytes(range(256)) * 4) and None


def text_file(name: str, text: str) -> Callable[[Ctx], None]:
    return lambda ctx: (ctx.case_dir / name).write_text(text) and None


def folder_with(name: str, files: dict[str, str]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        (ctx.case_dir / name).mkdir()
        for f, text in files.items():
            (ctx.case_dir / name / f).write_text(text)
    return setup


def both(*setups: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        for s in setups:
            s(ctx)
    return setup


def running_training(name: str = "live") -> Callable[[Ctx], None]:
    """A training in the background (one for all cases, killed at the end of the battery), its lock taken."""
    def setup(ctx: Ctx) -> None:
        if name in ctx.shared and BACKGROUND and BACKGROUND[-1].poll() is None:
            ctx.paths[name] = ctx.shared[name]
            return
        out = ctx.case_dir / name
        cmd = [sys.executable, "-m", "spikeforge.cli", "train", *TRAIN_MNIST, "--out", str(out), "--epochs",
               str(LONG_EPOCHS)]
        BACKGROUND.append(subprocess.Popen([ctx.fmt(a) for a in cmd], cwd=ctx.case_dir, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"}))
        deadline = time.time() + 120
        while not (out / RunDir.CHECKPOINTS / "latest").exists() and time.time() < deadline:
            time.sleep(0.5)
        ctx.paths[name] = ctx.shared[name] = out
    return setup


BACKGROUND: list[subprocess.Popen[bytes]] = []
LONG_EPOCHS = 1000  # a training that runs until the battery stops it
TINY = ["--set", "model.width=0.25", "--set", "data.time_steps=2", "--set", "train.batch_size=16",
        "--set", "train.eval_batch_size=16", "--device", "cpu", "--quiet"]
TRAIN_MNIST = ["--recipe", "mnist-sdsnn", "--data", "{mnist}", *TINY]
TRAIN = ["train", *TRAIN_MNIST, "--out", "{case}/run", "--epochs", "1"]


def train_with(*sets: str, recipe: str = "mnist-sdsnn") -> list[str]:
    args = ["train", "--recipe", recipe, "--data", "{mnist}", *TINY, "--out", "run", "--epochs", "1"]
    for s in sets:
        args += ["--set", s]
    return args


# -- the cases ---------------------------------------------------------------------------------------
def recipe_cases() -> list[Case]:
    bad_sets = [
        "train.batch_size=0", "train.batch_size=-8", "train.eval_batch_size=0", "train.keep_checkpoints=0",
        "train.skip_nonfinite_steps=-1", "train.label_smoothing=1.0", "train.label_smoothing=-0.1",
        "train.grad_clip=-1", "train.loss=hinge", "train.optimizer.name=rmsprop", "train.optimizer.lr=0",
        "train.optimizer.lr=-1", "train.optimizer.lr=nan", "train.optimizer.lr=inf", "train.optimizer.momentum=1.0",
        "train.optimizer.momentum=-0.5", "train.optimizer.weight_decay=-1", "train.optimizer.betas=[0.9]",
        "train.optimizer.betas=[1.0, 0.999]", "train.schedule.name=linear", "train.schedule.min_lr=nan",
        "train.schedule.min_lr=-1", "train.schedule.warmup_epochs=-1", "train.schedule.warmup_start_factor=-1",
        "train.schedule.step_size=0", "train.schedule.gamma=0", "train.device=tpu", "model.name=resnet99",
        "model.width=0", "model.width=-0.5", "model.width=nan", "model.num_classes=0", "model.neuron.kind=izhikevich",
        "model.neuron.beta=1.5", "model.neuron.beta=-0.1", "model.neuron.threshold=0",
        "model.neuron.surrogate=relu", "model.init=xavier", "data.time_steps=0", "data.encoding=spikes",
        "data.name=imagenet21k", "data.train_limit=-1", "data.std=[0.0]", "data.cutout=-4", "hybrid.sites=bogus:1",
        "hybrid.levels=0", "develop.contraction=2", "develop.fc_initial_rate=150", "train.epoch=3", "train=5",
        "train.optimizer=sgd", "train.batch_size=2.5", "train.optimizer.lr=fast", "model.neuron=lif",
    ]
    cases = [Case("recipes", f"--set {s}", train_with(s), check=not_created("run")) for s in bad_sets]
    cases += [
        Case("recipes", "beta=0 and tau=0", train_with("model.neuron.beta=0", "model.neuron.tau=0"),
             check=not_created("run")),
        Case("recipes", "plif with tau=1", train_with("model.neuron.kind=plif", "model.neuron.tau=1"),
             check=not_created("run")),
        Case("recipes", "resnet residual style", train_with("model.name=resnet19", "model.residual=dense"),
             check=not_created("run")),
        Case("recipes", "--epochs 0", [*TRAIN[:-2], "--epochs", "0"]),
        Case("recipes", "--epochs -3", [*TRAIN[:-2], "--epochs", "-3"]),
        Case("recipes", "--device tpu", [*TRAIN, "--device", "tpu"]),
        Case("recipes", "--device cuda:3", [*TRAIN, "--device", "cuda:3"]),
        Case("recipes", "binary recipe file", ["train", "--recipe", "{case}/w.toml", "--out", "run"],
             setup=binary_file("w.toml")),
        Case("recipes", "binary recipe without .toml", ["train", "--recipe", "{case}/weights.bin", "--out", "run"],
             setup=binary_file("weights.bin")),
        Case("recipes", "recipe is a folder", ["train", "--recipe", "{case}", "--out", "run"]),
        Case("recipes", "missing recipe file", ["train", "--recipe", "{case}/nope.toml", "--out", "run"]),
        Case("recipes", "unknown packaged recipe", ["train", "--recipe", "mnist-sdsnn-typo", "--out", "run"]),
        Case("recipes", "invalid TOML", ["train", "--recipe", "{case}/r.toml", "--out", "run"],
             setup=text_file("r.toml", "[train\nepochs = 1\n")),
        Case("recipes", "unknown section", ["train", "--recipe", "{case}/r.toml", "--out", "run"],
             setup=text_file("r.toml", "[trainer]\nepochs = 1\n")),
        Case("recipes", "empty --set", [*TRAIN, "--set", "=3"]),
        Case("recipes", "data.mean of 3 channels for MNIST", train_with("data.mean=[0.1, 0.2, 0.3]"),
             protect=["mnist"]),
        Case("recipes", "sites: auto policy without data", ["sites", "--recipe", "mnist-sdsnn", "--set",
                                                            "hybrid.sites=auto:0.25"], expect="ok"),
        Case("recipes", "recipes --show of a bad name", ["recipes", "--show", "nope"]),
    ]
    if not torch.cuda.is_available():
        cases.append(Case("recipes", "--device cuda without CUDA", [*TRAIN, "--device", "cuda"],
                          check=stderr_has("CUDA is not available")))
    return cases


def data_cases() -> list[Case]:
    ev = ["evaluate", "{pure}", "--json", "--device", "cpu"]
    return [
        Case("data", "--data is a file", ["train", *TRAIN_MNIST[:2], "--data", "{case}/x.txt", *TINY, "--out", "run"],
             setup=text_file("x.txt", "hello"), protect=["x.txt"]),
        Case("data", "--data missing", ["train", *TRAIN_MNIST[:2], "--data", "{case}/none", *TINY, "--out", "run"],
             check=not_created("run")),
        Case("data", "--data empty folder", ["train", *TRAIN_MNIST[:2], "--data", "{case}/e", *TINY, "--out", "run"],
             setup=folder_with("e", {}), check=not_created("run")),
        Case("data", "--data is a CIFAR folder", ["train", *TRAIN_MNIST[:2], "--data", "{cifar}", *TINY, "--out",
                                                  "run"], protect=["cifar"], check=not_created("run")),
        Case("data", "truncated IDX file", ["train", *TRAIN_MNIST[:2], "--data", "{mnist-truncated}", *TINY, "--out",
                                            "run"], protect=["mnist-truncated"]),
        Case("data", "label out of range", ["train", *TRAIN_MNIST[:2], "--data", "{mnist-badlabel}", *TINY, "--out",
                                            "run"]),
        Case("data", "0 training images", ["train", *TRAIN_MNIST[:2], "--data", "{mnist-empty}", *TINY, "--out",
                                           "run"], check=not_created("run")),
        Case("data", "evaluate: recorded folder by default", ev, expect="ok", protect=["pure"],
             check=accuracy_of_epoch("pure", best=False)),
        Case("data", "evaluate: same data in another folder", [*ev, "--data", "{mnist-copy}"], expect="ok",
             protect=["pure"], check=all_of(accuracy_of_epoch("pure", best=False),
                                            lambda _c, r: "a warning for equal data" if "warning" in r.err else None)),
        Case("data", "evaluate: fewer test samples", [*ev, "--data", "{mnist-fewer}"], expect="ok",
             protect=["pure"], check=stderr_has("test.samples = 8 here, but 16")),
        Case("data", "evaluate: same files, other pixels", [*ev, "--data", "{mnist-other}"], expect="ok",
             check=stderr_has("samples or labels differ")),
        Case("data", "evaluate: other image size", [*ev, "--data", "{mnist-16px}"], protect=["pure"]),
        Case("data", "evaluate: the data folder moved away", ["evaluate", "{pure-moved}", "--device", "cpu"],
             protect=["pure-moved"]),
        Case("data", "compact: other image size", ["compact", "{developed}", "--out", "c", "--data", "{mnist-16px}"],
             protect=["developed"], check=not_created("c")),
        Case("data", "convert --data: other image size", ["convert", "{hybrid}", "--out", "c", "--data",
                                                          "{mnist-16px}"], protect=["hybrid"], check=not_created("c")),
        Case("data", "verify --data: fewer samples", ["verify", "{converted}", "--data", "{mnist-fewer}", "--no-snn"],
             expect="ok", check=stderr_has("test.samples = 8 here")),
        Case("data", "verify: recorded folder by default", ["verify", "{converted}", "--no-snn", "--json"],
             expect="ok", check=json_field("exact", lambda v: v is True, "true")),
    ]


def output_cases() -> list[Case]:
    ck = "checkpoints/epoch-0002/model.safetensors"
    return [
        Case("outputs", "convert RUN --out RUN", ["convert", "{hybrid}", "--out", "{hybrid}"], protect=["hybrid"]),
        Case("outputs", "convert RUN --out RUN --force", ["convert", "{hybrid}", "--out", "{hybrid}", "--force"],
             protect=["hybrid"]),
        Case("outputs", "export RUN --out RUN/.../model.safetensors", ["export", "{pure}", "--out", f"{{pure}}/{ck}"],
             protect=["pure"]),
        Case("outputs", "export --out RUN's own file --force", ["export", "{pure}", "--out", f"{{pure}}/{ck}",
                                                                 "--force"], protect=["pure"]),
        Case("outputs", "export --out into another run", ["export", "{pure}", "--out", "{developed}/m.nir"],
             protect=["developed"]),
        Case("outputs", "export --out an existing file", ["export", "{pure}", "--out", "{case}/m.nir"],
             setup=text_file("m.nir", "mine"), protect=["m.nir"]),
        Case("outputs", "export --out an existing file --force", ["export", "{pure}", "--out", "{case}/m.nir",
                                                                  "--force"], setup=text_file("m.nir", "old"),
             expect="ok", check=lambda c, _r: None if c.p("m.nir").stat().st_size > 100 else "not replaced"),
        Case("outputs", "export --out a folder", ["export", "{pure}", "--out", "{case}"]),
        Case("outputs", "compact RUN --out RUN", ["compact", "{developed}", "--out", "{developed}"],
             protect=["developed"]),
        Case("outputs", "compact --out an existing run", ["compact", "{developed}", "--out", "{pure}"],
             protect=["pure", "developed"]),
        Case("outputs", "compact --out an existing run --force", ["compact", "{developed}", "--out", "{case}/old",
                                                                  "--force", "--samples", "16"],
             setup=lambda c: c.copy("pure", "old") and None, expect="ok", protect=["developed"],
             check=lambda c, _r: None if "compacted_from" in RunDir(c.p("old")).read_model_meta() else "not replaced"),
        Case("outputs", "compact --out inside another run", ["compact", "{developed}", "--out", "{pure}/small"],
             protect=["pure"]),
        Case("outputs", "compact --out a user's folder --force", ["compact", "{developed}", "--out", "{case}/mine",
                                                                  "--force"],
             setup=folder_with("mine", {"thesis.tex": "years"}), protect=["mine"]),
        Case("outputs", "convert --out the data folder --force", ["convert", "{hybrid}", "--out", "{mnist}",
                                                                  "--force"], protect=["mnist"]),
        Case("outputs", "convert --out an empty folder", ["convert", "{hybrid}", "--out", "{case}/e"],
             setup=folder_with("e", {}), expect="ok", check=lambda c, _r: None if (c.p("e") / "graph.json").is_file()
             else "no graph.json"),
        Case("outputs", "import --out an existing run", ["import", "{pure-nir}", "--out", "{pure}"],
             protect=["pure"]),
        Case("outputs", "train --out an existing run", [*TRAIN[:-4], "--out", "{case}/run", "--epochs", "1"],
             setup=copy_of("pure"), protect=["run"]),
        Case("outputs", "train --out a user's folder", [*TRAIN[:-4], "--out", "{case}/mine", "--epochs", "1"],
             setup=folder_with("mine", {"a.txt": "x"}), protect=["mine"]),
        Case("outputs", "train --out a user's folder --force", [*TRAIN[:-4], "--out", "{case}/mine", "--force"],
             setup=folder_with("mine", {"a.txt": "x"}), protect=["mine"]),
        Case("outputs", "train --out a file", [*TRAIN[:-4], "--out", "{case}/x.txt"], setup=text_file("x.txt", "x"),
             protect=["x.txt"]),
        Case("outputs", "train --force replaces a run", [*TRAIN[:-4], "--out", "{case}/run", "--epochs", "1",
                                                          "--force", "--set", "train.seed=7"],
             setup=copy_of("pure"), expect="ok",
             check=lambda c, _r: None if RunDir(c.p("run")).committed_epoch() == 1 else "not replaced"),
        Case("outputs", "plot writes its figures", ["plot", "{case}/run"], setup=copy_of("pure"), expect="ok",
             protect=["run"]),
        Case("outputs", "demo --out a user's folder", ["demo", "--out", "{case}/mine", "--epochs", "1"],
             setup=folder_with("mine", {"a.txt": "x"}), protect=["mine"]),
    ]


def numerics_cases() -> list[Case]:
    cases = [Case("numerics", f"NaN weights: {cmd[0]}", cmd, setup=poison_weights("pure"), protect=["run"])
             for cmd in (["evaluate", "{case}/run", "--device", "cpu"], ["convert", "{case}/run", "--out", "c"],
                         ["export", "{case}/run", "--out", "m.nir"], ["plot", "{case}/run"])]
    cases[-1].expect, cases[-1].check = "ok", None  # plot reads only the metrics: nothing to refuse
    cases += [
        Case("numerics", "NaN weights: compact", ["compact", "{case}/run", "--out", "c"],
             setup=poison_weights("developed"), protect=["run"]),
        Case("numerics", "NaN weights: --resume", [*TRAIN[:-4], "--out", "{case}/run", "--resume", "--epochs", "3"],
             setup=poison_weights("pure"), protect=["run"]),
        Case("numerics", "NaN optimizer state: --resume", [*TRAIN[:-4], "--out", "{case}/run", "--resume",
                                                           "--epochs", "3"],
             setup=poison_weights("pure", optimizer=True), protect=["run"]),
        Case("numerics", "inputs overflow to inf (std 1e-45)", train_with("data.std=[1e-45]", "data.encoding=direct"),
             check=committed("run", None)),
        Case("numerics", "inputs overflow, skip 3 steps", train_with("data.std=[1e-45]", "data.encoding=direct",
                                                                     "train.skip_nonfinite_steps=3"),
             check=committed("run", None)),
        Case("numerics", "lr=1e30 (adam)", train_with("train.optimizer.lr=1e30"), expect="ok",
             check=finite_weights("run")),
        Case("numerics", "lr=1e30 (sgd, ce)", train_with("train.optimizer.lr=1e30", "train.optimizer.name=sgd",
                                                         "train.loss=ce", "model.spiking_output=false"),
             expect="ok", check=finite_weights("run")),
        Case("numerics", "--resume of a good run with lr=1e30", [*TRAIN[:-4], "--out", "{case}/run", "--resume",
                                                                  "--epochs", "3", "--set", "train.optimizer.lr=1e30"],
             setup=copy_of("pure"), protect=["run"]),
        Case("numerics", "NaN in a NIR file", ["import", "{nan-nir}", "--out", "run", "--dt", "1"],
             check=not_created("run")),
    ]
    return cases


def resume_cases() -> list[Case]:
    resume = [*TRAIN[:-4], "--out", "{case}/run", "--resume"]
    return [
        Case("resume", "nothing to resume", [*TRAIN[:-4], "--out", "{case}/none", "--resume"]),
        Case("resume", "resume an empty folder", [*resume, "--epochs", "1"], setup=folder_with("run", {}),
             expect="ok", check=committed("run", 1)),
        Case("resume", "resume a user's folder", [*resume, "--epochs", "1"], setup=folder_with("run", {"a": "x"}),
             protect=["run"]),
        Case("resume", "another optimizer", [*resume, "--epochs", "3", "--set", "train.optimizer.name=sgd"],
             setup=copy_of("pure"), protect=["run"]),
        Case("resume", "another learning rate", [*resume, "--epochs", "3", "--set", "train.optimizer.lr=0.5"],
             setup=copy_of("pure"), protect=["run"]),
        Case("resume", "another width", [*resume, "--epochs", "3", "--set", "model.width=0.5"],
             setup=copy_of("pure"), protect=["run"]),
        Case("resume", "more epochs", [*resume, "--epochs", "3"], setup=copy_of("pure"), expect="ok",
             check=committed("run", 3)),
        Case("resume", "fewer epochs", [*resume, "--epochs", "1"], setup=copy_of("pure"), protect=["run"]),
        Case("resume", "a finished run", [*resume, "--epochs", "2"], setup=copy_of("pure"), expect="ok",
             protect=["run"], check=stderr_has("nothing to train")),
        Case("resume", "a compacted run", ["train", "--recipe", "{compacted}/recipe.toml", "--data", "{mnist}",
                                           "--out", "{case}/run", "--resume", "--epochs", "5", "--quiet"],
             setup=copy_of("compacted"), protect=["run"]),
        Case("resume", "an imported run (fine-tune)", ["train", "--recipe", "{case}/run/recipe.toml", "--data",
                                                       "{mnist}", "--out", "{case}/run", "--resume", "--epochs", "1",
                                                       "--quiet", "--device", "cpu"],
             setup=copy_of("imported"), expect="ok", check=committed("run", 1)),
        Case("resume", "an old-layout run", [*resume, "--epochs", "3"], setup=flat_layout("pure"), expect="ok",
             check=all_of(committed("run", 3), lambda c, _r: None if not (c.p("run") / "model.json").exists()
                          else "stale flat files left")),
        Case("resume", "an old-layout run interrupted mid-checkpoint", [*resume, "--epochs", "3"],
             setup=flat_layout("pure", mismatch=True), protect=["run"]),
        Case("resume", "evaluate an old-layout run", ["evaluate", "{case}/run", "--json", "--device", "cpu"],
             setup=flat_layout("pure"), expect="ok", protect=["run"]),
        Case("resume", "evaluate --best of an old-layout run", ["evaluate", "{case}/run", "--best"],
             setup=flat_layout("pure"), protect=["run"]),
        Case("resume", "latest checkpoint truncated", [*resume, "--epochs", "3"],
             setup=damage("pure", "latest-truncated"), expect="ok",
             check=all_of(committed("run", 3), stderr_has("passed over damaged"))),
        Case("resume", "every checkpoint truncated", [*resume, "--epochs", "3"], setup=damage("pure", "all-truncated"),
             protect=["run"]),
        Case("resume", "evaluate a truncated latest", ["evaluate", "{case}/run", "--device", "cpu"],
             setup=damage("pure", "latest-truncated"), expect="ok", check=stderr_has("passed over damaged")),
        Case("resume", "crash leftovers", [*resume, "--epochs", "3"], setup=damage("pure", "leftovers"), expect="ok",
             check=all_of(committed("run", 3), stderr_has("removed what an interrupted run left"))),
        Case("resume", "evaluate --best", ["evaluate", "{developed}", "--best", "--json", "--device", "cpu"],
             expect="ok", protect=["developed"], check=accuracy_of_epoch("developed", best=True)),
        Case("resume", "evaluate --best of an imported run", ["evaluate", "{imported}", "--best"],
             protect=["imported"]),
        Case("resume", "evaluate a converted folder", ["evaluate", "{converted}"], protect=["converted"]),
        Case("resume", "evaluate a file", ["evaluate", "{case}/x.txt"], setup=text_file("x.txt", "x")),
        Case("resume", "verify a run (not converted)", ["verify", "{pure}"], protect=["pure"]),
        Case("resume", "disk full at the first checkpoint", [*TRAIN[:-4], "--out", "{case}/run", "--epochs", "2"],
             limit_file_bytes=FULL_DISK_BYTES, check=committed("run", None)),
        Case("resume", "resume after a full disk", [*resume, "--epochs", "2"], setup=full_disk_first, expect="ok",
             check=committed("run", 2)),
    ]


def locking_cases() -> list[Case]:
    live = [*TRAIN[:-4], "--out", "{live}"]
    return [
        Case("locking", "second train on a running run", [*live, "--epochs", str(LONG_EPOCHS)],
             setup=running_training()),
        Case("locking", "--resume of a running run", [*live, "--resume", "--epochs", str(LONG_EPOCHS)],
             setup=running_training()),
        Case("locking", "compact --out a running run --force", ["compact", "{developed}", "--out", "{live}",
                                                                "--force"], setup=running_training()),
        Case("locking", "stale lock of a dead process", [*TRAIN[:-4], "--out", "{case}/run", "--resume", "--epochs",
                                                         "3"], setup=lock_file("pure", ""), expect="ok",
             check=all_of(committed("run", 3), stderr_has("stale lock"))),
        Case("locking", "lock from another host", [*TRAIN[:-4], "--out", "{case}/run", "--resume", "--epochs", "3"],
             setup=lock_file("pure", "node-17"), protect=["run"], check=stderr_has("rm ")),
    ]


def cli_cases() -> list[Case]:
    cases = [Case("cli", f"{c}: missing run", [c, "{case}/missing", *(["--out", "o"] if c in ("convert", "compact",
                                                                                               "export") else [])])
             for c in ("evaluate", "convert", "verify", "compact", "export", "plot")]
    cases += [
        Case("cli", "unknown command", ["trian"], expect="usage"),
        Case("cli", "train without --recipe", ["train"], expect="usage"),
        Case("cli", "non-integer --batch-size", ["evaluate", "{pure}", "--batch-size", "many"], expect="usage"),
        Case("cli", "evaluate --batch-size 0", ["evaluate", "{pure}", "--batch-size", "0"]),
        Case("cli", "--debug shows the traceback", ["evaluate", "{case}/missing", "--debug"], expect="traceback"),
        Case("cli", "Ctrl-C during training", [*TRAIN[:-4], "--out", "{case}/run", "--epochs", str(LONG_EPOCHS)],
             expect="interrupt", interrupt_after=20.0),
        Case("cli", "import a file that is not NIR", ["import", "{case}/x.nir", "--out", "run"],
             setup=text_file("x.nir", "not hdf5")),
        Case("cli", "plot a folder without metrics", ["plot", "{case}"]),
        Case("cli", "sites of a bad recipe", ["sites", "--recipe", "mnist-sdsnn", "--set", "model.width=0"]),
    ]
    return cases


CLASSES: dict[str, Callable[[], list[Case]]] = {
    "recipes": recipe_cases, "data": data_cases, "outputs": output_cases, "numerics": numerics_cases,
    "resume": resume_cases, "locking": locking_cases, "cli": cli_cases,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/spikeforge-cases", help="scratch folder (emptied first)")
    p.add_argument("--classes", nargs="+", choices=list(CLASSES), default=list(CLASSES))
    p.add_argument("--only", default="", help="run the cases whose name contains this")
    p.add_argument("--json", default=None, help="write every case to this JSON file")
    p.add_argument("--source", default=None,
                   help="the src/ folder of another spikeforge checkout whose commands to run (the workspace is "
                        "built with it too; cases whose setup or check needs this version are skipped)")
    a = p.parse_args()
    if a.source:
        SOURCE_ENV.update(PYTHONPATH=str(Path(a.source).resolve()), PYTHONDONTWRITEBYTECODE="1")
        os.environ.update(SOURCE_ENV)  # the workspace builder's commands too
    root = Path(a.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.perf_counter()
    ctx = Ctx(root, build_workspace(root / "workspace"))
    print(f"workspace ready ({time.perf_counter() - started:.0f} s)", flush=True)
    results = []
    try:
        for cls in a.classes:
            for case in CLASSES[cls]():
                if a.only and a.only not in case.name:
                    continue
                try:
                    r = run_case(case, ctx)
                except Exception as e:  # noqa: BLE001 - a setup or check that needs files this version writes
                    if not a.source:
                        raise
                    print(f"{'n/a':<15} {cls:<9} {case.name:<45} {type(e).__name__}: {e}"[:200], flush=True)
                    continue
                results.append(r)
                print(f"{r['outcome']:<15} {cls:<9} {case.name:<45} {r['note'][:150]}", flush=True)
    finally:
        for proc in BACKGROUND:
            proc.kill()
    print()
    print("| class | cases | " + " | ".join(OUTCOMES) + " |")
    print("|---|---:|" + "---:|" * len(OUTCOMES))
    for cls in [*a.classes, "all"]:
        group = [r for r in results if cls in ("all", r["class"])]
        print(f"| {cls} | {len(group)} | " + " | ".join(str(sum(r["outcome"] == o for r in group)) for o in OUTCOMES)
              + " |")
    bad = [r for r in results if r["outcome"] not in GOOD]
    print(f"\n{len(results)} cases, {len(bad)} not clear/correct, {time.perf_counter() - started:.0f} s "
          f"({time.strftime('%Y-%m-%d')}, torch {torch.__version__}, numpy {np.__version__})")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
