"""bench/gpu_check.sh in its reduced CPU mode: one JSON report, every step run or skipped with a
reason, and the failure paths (no torch to be had, no data, no time left) still give a report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
# data.name = "cifar10" refuses an image folder without all 10 classes
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def image_folder(root: Path, per_class: dict[str, int]) -> Path:
    """CIFAR-sized JPEGs in the ImageNet-style layout ``root/{train,test}/<class>/<image>``."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for cls in CLASSES:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
    return root


def run_check(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> tuple[int, dict]:
    proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=env)
    return proc.returncode, json.loads(proc.stdout)


def test_reduced_mode_runs_every_step(tmp_path: Path) -> None:
    data = image_folder(tmp_path / "c10", {"train": 4, "test": 2})
    rc, report = run_check("--python", sys.executable, "--reduced", "--budget-s", "400", "--data", str(data))
    steps = report["steps"]
    assert rc == 0 and report["ok"], json.dumps(report, indent=1)[-3000:]
    assert report["mode"] == "cpu-reduced" and report["triton_auto_ready"] is False
    assert set(steps) == {"triton_tests", "bf16_smoke", "neurons", "train_step", "train_step_sj_torch",
                          "cifar10_resnet19", "event_runtime"}
    events = steps["event_runtime"]
    assert events["ok"] and set(events["methods"]) == {"auto", "csr", "scatter", "dense"}
    assert all(m["counts_equal_cpu"] and m["max_abs_diff"] <= 1e-9 for m in events["methods"].values())
    assert "CUDA" in steps["train_step_sj_torch"]["skipped"]
    smoke = steps["bf16_smoke"]
    assert smoke["backends"]["fused"]["spikes_equal_fp32_reference"]
    assert smoke["backends"]["fused"]["membrane_dtype"] == "torch.float32"
    cells = steps["neurons"]["result"]["cells"]
    assert cells[0]["columns"]["spikeforge fused (eager)"]["m_steps_per_s"] > 0
    assert steps["train_step"]["result"]["models"][0]["columns"]["sf-fused"]["samples_per_s"] > 0
    cifar = steps["cifar10_resnet19"]
    assert cifar["epochs_done"] == 1 and cifar["completed"] and cifar["epochs_per_min"] > 0
    assert report["setup"]["python"] == sys.executable


def test_missing_data_and_spent_budget_are_reported(tmp_path: Path) -> None:
    rc, report = run_check("--python", sys.executable, "--reduced", "--data", str(tmp_path / "none"),
                           "--steps", "cifar10_resnet19")
    assert rc == 0 and "no image-folder CIFAR-10" in report["steps"]["cifar10_resnet19"]["skipped"]
    rc, report = run_check("--python", sys.executable, "--reduced", "--budget-s", "5")
    assert all("budget spent" in s["skipped"] for s in report["steps"].values())


def test_no_torch_to_be_had_gives_a_json_error(tmp_path: Path) -> None:
    """A fresh venv that cannot get torch (an empty wheel folder, no index): one JSON error line."""
    env = dict(os.environ, PATH=SYSTEM_PATH)  # python3 = the system's, not this test's venv
    probe = subprocess.run(["python3", "-c", "import torch"], capture_output=True, env=env)
    if shutil.which("python3", path=SYSTEM_PATH) is None or probe.returncode == 0:
        pytest.skip("needs a system python3 without torch")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    rc, report = run_check("--venv", str(tmp_path / "venv"), "--wheels", str(wheels), timeout=300, env=env)
    assert rc == 1 and report["ok"] is False and "no python with torch" in report["error"]
    assert "torch" in report["setup_log_tail"]


def test_pack_data_keeps_a_class_balanced_prefix(tmp_path: Path) -> None:
    src = image_folder(tmp_path / "src", {"train": 3, "test": 2})
    proc = subprocess.run(["bash", str(SCRIPT), "--pack-data", str(src), str(tmp_path / "dst"), "2", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for cls in CLASSES:
        assert sorted(p.name for p in (tmp_path / "dst" / "train" / cls).iterdir()) == ["0000.jpg", "0001.jpg"]
        assert [p.name for p in (tmp_path / "dst" / "test" / cls).iterdir()] == ["0000.jpg"]
    bad = subprocess.run(["bash", str(SCRIPT), "--pack-data", str(tmp_path / "nope"), str(tmp_path / "x"), "1", "1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "expected SRC/{train,test}" in bad.stderr
