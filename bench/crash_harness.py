"""Crash harness: SIGKILL a small training at every file write and at random moments, resume, compare.

For each recipe (a pure SNN, a hybrid, a structurally developed one; tiny settings on the MNIST
subset bundled with the package, so a run takes seconds) the harness

1. trains once without interruption, counting the *write events* (``SPIKEFORGE_COUNT_WRITES``: every
   temporary file written, every rename, every appended metrics line, the lock; see
   ``spikeforge/atomic.py``) -- this is the reference;
2. for every write event N (or a sample, ``--events``): trains the same command with
   ``SPIKEFORGE_KILL_AT_WRITE=N`` (the process SIGKILLs itself there, leaving a torn temporary file
   or line as a crash would), then runs the command again with ``--resume``;
3. ``--random`` times per recipe: SIGKILLs the training after a random delay (and, in every other
   trial, the first resume too), then resumes until the command completes;

and after each trial checks that every resume exited 0, that the final model's tensors are
bit-identical to the reference (``torch.equal`` on every tensor of the latest checkpoint), that the
metrics records equal the reference's (timings aside), and that no lock, temporary file or
uncommitted checkpoint is left. It prints one line per trial, a summary table, and with ``--json``
writes every trial. Exit code 0 only when every trial passed.

    nice -n 10 python bench/crash_harness.py --out /tmp/crash --random 10 --json crash.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from spikeforge.atomic import COUNT_ENV, KILL_AT_ENV
from spikeforge.train.run_files import RunDir

TINY = ["data.name=mnist-bundled", "data.train_limit=256", "data.test_limit=64", "model.width=0.25",
        "data.time_steps=2", "train.batch_size=64", "train.eval_batch_size=64"]
RECIPES: dict[str, list[str]] = {
    "pure": ["--recipe", "demo-mnist", "--set", "hybrid.sites=none"],
    "hybrid": ["--recipe", "demo-mnist", "--set", "hybrid.sites=first:1"],
    "developed": ["--recipe", "mnist-sdsnn-develop", "--set", "develop.min_consecutive_epochs=1",
                  "--set", "data.encoding=direct", "--set", "train.loss=ce"],
}
EPOCHS = 3  # the developed recipe prunes from epoch 3 (C = 1)
TIME_KEYS = ("train_time_s", "epoch_time_s", "train_samples_per_s")
KILLED = -signal.SIGKILL
RUN_TIMEOUT_S = 600


@dataclass
class Trial:
    recipe: str
    kind: str  # "write" | "random"
    at: str  # the write event ("17 moved epoch-0001") or the kill delays in seconds
    killed: int = 0  # how many processes were SIGKILLed
    resumes: int = 0
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def command(recipe: str, out: Path, resume: bool) -> list[str]:
    sets = [a for s in TINY for a in ("--set", s)]
    return [sys.executable, "-m", "spikeforge.cli", "train", *RECIPES[recipe], *sets, "--epochs", str(EPOCHS),
            "--device", "cpu", "--quiet", "--out", str(out), *(["--resume"] if resume else [])]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT_ENV, COUNT_ENV)}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    return env


def run(cmd: list[str], env: dict[str, str], kill_after: float | None = None) -> tuple[int, str]:
    """Run ``cmd``; SIGKILL it after ``kill_after`` seconds if given. Returns (exit code, stderr tail)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=kill_after if kill_after is not None else RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    return proc.returncode, (err or "").strip()[-400:]


def final_state(out: Path) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    run_dir = RunDir(out)
    records = [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in run_dir.read_metrics()]
    return load_file(str(run_dir.weights_path())), records


def leftovers(out: Path) -> list[str]:
    """What a finished run directory must not hold: a lock, temporary files, staging or trash folders."""
    found = [p.relative_to(out).as_posix() for p in out.rglob(".*")]
    if (out / RunDir.LOCK).exists():
        found.append(RunDir.LOCK)
    return found


def compare(trial: Trial, out: Path, reference: tuple[dict[str, torch.Tensor], list[dict[str, Any]]]) -> None:
    tensors, records = final_state(out)
    ref_tensors, ref_records = reference
    if tensors.keys() != ref_tensors.keys():
        trial.problems.append(f"tensor names differ: {sorted(tensors.keys() ^ ref_tensors.keys())[:4]}")
    else:
        differ = [k for k in tensors if not torch.equal(tensors[k], ref_tensors[k])]
        if differ:
            worst = max(float((tensors[k].double() - ref_tensors[k].double()).abs().max()) for k in differ)
            trial.problems.append(f"{len(differ)} tensors differ (max |diff| {worst:.3g}), e.g. {differ[:3]}")
    if records != ref_records:
        trial.problems.append(f"metrics differ: epochs {[r.get('epoch') for r in records]} vs "
                              f"{[r.get('epoch') for r in ref_records]}")
    left = leftovers(out)
    if left:
        trial.problems.append(f"left behind: {left[:4]}")


def resume_until_done(trial: Trial, recipe: str, out: Path, kill_after: float | None = None) -> None:
    """Resume (killed once more after ``kill_after`` seconds when given), then resume to the end."""
    for delay in ([kill_after] if kill_after is not None else []) + [None]:
        started = out.exists()  # killed before it created the run directory: a user starts it again
        code, err = run(command(recipe, out, resume=started), environment(), delay)
        trial.resumes += 1
        if code == KILLED:
            trial.killed += 1
            continue
        if code != 0:
            trial.problems.append(f"--resume exited {code}: {err.splitlines()[-1] if err else ''}")
            return


def write_trial(recipe: str, event: int, label: str, base: Path, reference: Any) -> Trial:
    trial = Trial(recipe, "write", f"{event} {label}")
    out = base / f"{recipe}-w{event}"
    start = time.perf_counter()
    code, err = run(command(recipe, out, resume=False), environment(**{KILL_AT_ENV: str(event)}))
    if code != KILLED:
        trial.problems.append(f"expected SIGKILL at write event {event}, exited {code}: {err[-200:]}")
    else:
        trial.killed = 1
        resume_until_done(trial, recipe, out)
        if not trial.problems:
            compare(trial, out, reference)
    trial.ok, trial.seconds = not trial.problems, time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return trial


def random_trial(recipe: str, index: int, duration: float, rng: random.Random, base: Path, reference: Any) -> Trial:
    first = rng.uniform(0.2, duration)
    second = rng.uniform(0.2, duration) if index % 2 else None
    trial = Trial(recipe, "random", f"{first:.2f}s" + (f" + {second:.2f}s" if second is not None else ""))
    out = base / f"{recipe}-r{index}"
    start = time.perf_counter()
    code, err = run(command(recipe, out, resume=False), environment(), first)
    if code == KILLED:
        trial.killed = 1
    elif code != 0:
        trial.problems.append(f"training exited {code}: {err[-200:]}")
    if not trial.problems:
        resume_until_done(trial, recipe, out, second)
    if not trial.problems:
        compare(trial, out, reference)
    trial.ok, trial.seconds = not trial.problems, time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return trial


def reference_run(recipe: str, base: Path) -> tuple[Any, list[str], float]:
    out, events = base / f"{recipe}-reference", base / f"{recipe}-events.txt"
    events.unlink(missing_ok=True)
    start = time.perf_counter()
    code, err = run(command(recipe, out, resume=False), environment(**{COUNT_ENV: str(events)}))
    duration = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"reference run of {recipe} failed ({code}): {err}")
    labels = [line.split("\t", 1)[1] for line in events.read_text().splitlines()]
    return final_state(out), labels, duration


def pick(n_events: int, wanted: int) -> list[int]:
    """All events 1..n, or ``wanted`` of them spread evenly (always the first and the last)."""
    if wanted <= 0 or wanted >= n_events:
        return list(range(1, n_events + 1))
    step = (n_events - 1) / (wanted - 1)
    return sorted({1 + round(i * step) for i in range(wanted)})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/spikeforge-crash", help="scratch folder (emptied first)")
    p.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    p.add_argument("--events", type=int, default=0, help="write events to kill at per recipe (0 = every one)")
    p.add_argument("--random", type=int, default=10, help="random-time trials per recipe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write every trial to this JSON file")
    a = p.parse_args()
    base = Path(a.out)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    rng = random.Random(a.seed)
    trials: list[Trial] = []
    started = time.perf_counter()
    for recipe in a.recipes:
        reference, labels, duration = reference_run(recipe, base)
        print(f"{recipe}: reference run {duration:.1f} s, {len(labels)} write events", flush=True)
        jobs = [("write", n) for n in pick(len(labels), a.events)] + [("random", i) for i in range(a.random)]
        for kind, n in jobs:
            t = (write_trial(recipe, n, labels[n - 1], base, reference) if kind == "write"
                 else random_trial(recipe, n, duration, rng, base, reference))
            trials.append(t)
            print(f"  {'ok  ' if t.ok else 'FAIL'} {kind:<6} {t.at:<28} killed {t.killed}, resumed {t.resumes} "
                  f"({t.seconds:.1f} s){'  ' + '; '.join(t.problems) if t.problems else ''}", flush=True)
    print()
    print("| recipe | kind | trials | SIGKILLs | resumed, bit-identical | failed |")
    print("|---|---|---:|---:|---:|---:|")
    for recipe in a.recipes:
        for kind in ("write", "random"):
            group = [t for t in trials if t.recipe == recipe and t.kind == kind]
            if group:
                print(f"| {recipe} | {kind} | {len(group)} | {sum(t.killed for t in group)} | "
                      f"{sum(t.ok for t in group)} | {sum(not t.ok for t in group)} |")
    failed = [t for t in trials if not t.ok]
    print(f"\n{len(trials)} trials, {len(failed)} failed, {time.perf_counter() - started:.0f} s "
          f"({time.strftime('%Y-%m-%d')}, torch {torch.__version__}, CPU)")
    if a.json:
        Path(a.json).write_text(json.dumps([asdict(t) for t in trials], indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
