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
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_data import build_workspace  # noqa: E402
from reliability_harness import (  # noqa: E402
    BACKGROUND,
    FULL_DISK_BYTES,
    GOOD,
    LONG_EPOCHS,
    OUTCOMES,
    SOURCE_ENV,
    TINY,
    TRAIN,
    TRAIN_MNIST,
    Case,
    Ctx,
    accuracy_of_epoch,
    all_of,
    binary_file,
    committed,
    copy_of,
    damage,
    finite_weights,
    flat_layout,
    folder_with,
    full_disk_first,
    json_field,
    lock_file,
    not_created,
    poison_weights,
    run_case,
    running_training,
    stderr_has,
    text_file,
    train_with,
)

from spikeforge.train.run_files import RunDir  # noqa: E402


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
