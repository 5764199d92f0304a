"""The machinery of ``bench/reliability_cases.py``: a case, how it runs in a fresh process, how its
outcome is classified (see that file's docstring), and the checks and setups the cases are made of."""

from __future__ import annotations

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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
