"""DVS128 Gesture (Amir et al., CVPR 2017): recordings cut into labelled samples.

Layout of the official ``DvsGesture`` folder (``root`` may be that folder or contain it)::

    user01_fluorescent.aedat          AEDAT 3.1 recording (one user, one lighting condition)
    user01_fluorescent_labels.csv     "class,startTime_usec,endTime_usec", one row per gesture
    ...
    trials_to_train.txt               one recording file name per line (train split)
    trials_to_test.txt                (test split)

Each label row selects the events with ``startTime_usec <= t < endTime_usec`` of its recording
as one sample; classes 1..11 become labels 0..10 (class 11 = "other gestures" is kept).
With ``split_by = "time"`` the frames split the labelled window, not the span of its events.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..base import DataSplits
from .aedat3 import DVS128_SIZE, read_aedat3
from .common import EventFormatError
from .datasets import SampleRef, build_splits, frame_spec

if TYPE_CHECKING:  # data.config imports events.config: avoid the import cycle
    from ..config import DataConfig

GESTURE_CLASSES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
                   "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise",
                   "arm_roll", "air_drums", "air_guitar", "other_gestures")
LABEL_HEADER = ("class", "startTime_usec", "endTime_usec")
TRIAL_LISTS = {"train": "trials_to_train.txt", "test": "trials_to_test.txt"}
LABELS_SUFFIX = "_labels.csv"


def read_gesture_labels(path: str | Path) -> np.ndarray:
    """Rows ``[label 0..10, start_us, end_us]`` (int64) of a DVS128 Gesture label file."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise EventFormatError(path, f"cannot read label file: {e}") from None
    lines = [ln.strip() for ln in text.splitlines()]
    if not lines or tuple(c.strip() for c in lines[0].split(",")) != LABEL_HEADER:
        got = lines[0] if lines else "an empty file"
        raise EventFormatError(path, f"bad label header: expected {','.join(LABEL_HEADER)!r}, got {got!r}")
    rows = []
    for num, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        cells = [c.strip() for c in line.split(",")]
        try:
            values = [int(c) for c in cells]
        except ValueError:
            values = []
        if len(values) != len(LABEL_HEADER):
            raise EventFormatError(path, f"line {num}: expected three integers "
                                         f"{','.join(LABEL_HEADER)}, got {line!r}")
        cls, start, end = values
        if not 1 <= cls <= len(GESTURE_CLASSES):
            raise EventFormatError(path, f"line {num}: class {cls} is outside 1..{len(GESTURE_CLASSES)}")
        if end <= start or start < 0:
            raise EventFormatError(path, f"line {num}: bad time window {start}..{end} µs")
        rows.append((cls - 1, start, end))
    if not rows:
        raise EventFormatError(path, "label file has no label rows")
    return np.array(rows, dtype=np.int64)


def gesture_root(root: Path) -> Path:
    for cand in (root, root / "DvsGesture"):
        if (cand / TRIAL_LISTS["train"]).is_file():
            return cand
    raise FileNotFoundError(f"DVS128 Gesture: no {TRIAL_LISTS['train']} in {root} or {root / 'DvsGesture'}")


def trial_files(base: Path, split: str) -> list[Path]:
    """The recordings listed in ``trials_to_<split>.txt`` (which must all exist)."""
    listing = base / TRIAL_LISTS[split]
    if not listing.is_file():
        raise FileNotFoundError(f"DVS128 Gesture: {listing} does not exist")
    names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise FileNotFoundError(f"DVS128 Gesture: {listing} lists {len(missing)} missing recording(s), "
                                f"e.g. {base / missing[0]}")
    if not names:
        raise EventFormatError(listing, "lists no recordings")
    return [base / n for n in names]


def labels_path(recording: Path) -> Path:
    return recording.with_name(recording.stem + LABELS_SUFFIX)


def gesture_refs(files: list[Path], skip_bad: bool, skipped: list[str]) -> list[SampleRef]:
    """One :class:`SampleRef` per label row; a bad label file raises or (skip_bad) drops its recording."""
    refs = []
    for rec in files:
        try:
            rows = read_gesture_labels(labels_path(rec))
        except EventFormatError:
            if not skip_bad:
                raise
            skipped.append(str(labels_path(rec)))
            continue
        refs += [SampleRef(rec, int(c), (int(s), int(e)), i) for i, (c, s, e) in enumerate(rows, start=1)]
    return refs


def load_dvsgesture(root: Path, cfg: DataConfig) -> DataSplits:
    """DVS128 Gesture: 11 classes, 128x128 (use ``data.events.size`` to downsample)."""
    base = gesture_root(Path(root))
    refs: dict[str, list[SampleRef]] = {}
    key_files: dict[str, list[Path]] = {}
    skips: dict[str, list[str]] = {}
    for split in TRIAL_LISTS:
        files = trial_files(base, split)
        skips[split] = []
        refs[split] = gesture_refs(files, cfg.events.skip_bad, skips[split])
        labels = [labels_path(f) for f in files if labels_path(f).is_file()]
        key_files[split] = [base / TRIAL_LISTS[split], *labels]
    spec = frame_spec(cfg, DVS128_SIZE, DVS128_SIZE)
    return build_splits("dvsgesture", cfg, refs, read_aedat3, spec, GESTURE_CLASSES, key_files, skips, root=base)
