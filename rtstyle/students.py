"""Distilled students: which stored model is whose student, `--fast`, and the hint that a student would help.

`cli.py distill` writes students whose metadata names their teacher (`extra.distilled_from`: name and
sha256 of the teacher's file) and installs them in the store. Here a teacher is matched to its students by
that hash (so a renamed or re-imported copy of the same file still matches), reading only safetensors
headers. `fast_model(spec)` is what `--fast` does: the newest student of `spec`, said out loud, or an error
that gives the distill command. `speed_hint` is what `--backend auto` adds on a CPU when the chosen path
would run a full-size model below `SLOW_FPS`: the estimate divides the model's MACs at its training size
(`rtstyle.macs`) by the throughput each CPU path reached on this project's 2-core AMD EPYC (Zen 4,
AVX512-VNNI/BF16; BENCHMARKS.md, full generator at 256x256), scaled by the core count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .formats.metadata import sha256_file
from .macs import generator_macs
from .store import ASSETS_DIR, ModelNotFound, resolve_model, store_dir
from .weights import ModelInfo, WeightsError, read_info

Log = Callable[[str], None]
SLOW_FPS = 5.0
# GMAC/s of the full generator at 256x256 on 2 Zen 4 cores (BENCHMARKS.md: 56.8 GMACs x measured fps).
CPU_GMACS_PER_S = {("openvino", "int8"): 155.0, ("openvino", "bf16"): 89.0, ("openvino", "auto"): 89.0,
                   ("openvino", "fp32"): 52.0, ("onnxruntime", "fp32"): 50.0, ("torch", "bf16"): 23.0,
                   ("torch", "fp32"): 22.0}
MEASURED_CORES = 2


@dataclass(frozen=True)
class Student:
    name: str
    path: Path
    info: ModelInfo

    @property
    def teacher(self) -> dict:
        return self.info.extra.get("distilled_from") or {}


def teacher_of(info: ModelInfo) -> dict | None:
    """The `distilled_from` record of a student's info (name, sha256), None for any other model."""
    record = info.extra.get("distilled_from")
    return record if isinstance(record, dict) and record.get("sha256") else None


def stored_students() -> list[Student]:
    """Every student among the bundled and stored safetensors models (headers only, unreadable files skipped)."""
    found = []
    for folder in (ASSETS_DIR, store_dir()):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.safetensors")):
            try:
                info = read_info(path)
            except WeightsError:
                continue
            if teacher_of(info):
                found.append(Student(path.stem, path, info))
    return found


def students_of(teacher_path: Path, students: list[Student] | None = None) -> list[Student]:
    """The students of the weights file `teacher_path`, newest first."""
    digest = sha256_file(teacher_path)
    matches = [s for s in (stored_students() if students is None else students) if s.teacher["sha256"] == digest]
    return sorted(matches, key=lambda s: s.path.stat().st_mtime, reverse=True)


def distill_command(spec: str) -> str:
    stem = Path(str(spec)).stem
    return (f"python cli.py distill --teacher {spec} --dataroot DIR --name {stem}_fast   "
            "(DIR: images or videos of what you will translate)")


def describe_student(student: Student) -> str:
    t, macs = student.teacher, student.info.extra.get("macs_256") or {}
    fidelity = student.info.extra.get("fidelity") or {}
    parts = [f"ngf {student.info.config.ngf}, {student.info.config.n_blocks} blocks"]
    if macs:
        parts.append(f"{macs['student'] / 1e9:.2f} vs {macs['teacher'] / 1e9:.2f} GMACs at 256x256")
    if fidelity.get("psnr_db") is not None:
        parts.append(f"{fidelity['psnr_db']:.1f} dB PSNR / {fidelity['ssim']:.3f} SSIM to the teacher")
    return f"{student.name}, the student of {t.get('name', '?')} ({'; '.join(parts)})"


def fast_model(spec: str | Path, log: Log | None = None) -> str:
    """What `--model SPEC --fast` runs: the path of SPEC's newest stored student; ModelNotFound without one."""
    path = resolve_model(spec)
    if path.suffix != ".safetensors" and path.suffix not in (".pth", ".pt"):
        raise ModelNotFound(f"--fast looks up the student of a weights file or store name, not of the "
                            f"{path.suffix or 'folder'} artifact {path}; pass the weights it was exported from")
    if path.suffix == ".safetensors":
        info = read_info(path)
        if teacher_of(info):
            if log:
                log(f"--fast: {spec} is already a distilled student; running it")
            return str(path)
    students = students_of(path)
    if not students:
        raise ModelNotFound(f"--fast: no student of {spec} in the store {store_dir()}; make one with "
                            f"`{distill_command(spec)}`, or run without --fast")
    if log:
        log(f"--fast: running {describe_student(students[0])} from the store")
    return str(students[0].path)


def relations(names: list[str]) -> dict[str, str]:
    """For `cli.py models`: 'student of X' for students, 'students: a, b' for teachers with any, by name."""
    students = stored_students()
    out, listed = {}, set()  # listed: the sha256 of every teacher that is here
    for name in names:
        if name in (s.name for s in students):
            continue
        try:
            mine = students_of(resolve_model(name), students)
        except (OSError, WeightsError):
            continue
        if mine:
            out[name] = "students: " + ", ".join(s.name for s in mine)
            listed.update(s.teacher["sha256"] for s in mine)
    for s in students:  # a bundled student's teacher is usually not here (the demo's is 45 MB): say so
        where = "" if s.teacher["sha256"] in listed else ", not in the store"
        out[s.name] = f"student of {s.teacher.get('name', '?')} (sha256 {s.teacher['sha256'][:12]}{where})"
    return out


def estimated_fps(info: ModelInfo, backend: str, precision: str, size: int | None = None,
                  cores: int | None = None) -> float | None:
    """Frames per second a CPU path would reach with this model at size x size (default: its training size)
    on `cores` cores (default: this machine's)."""
    rate = CPU_GMACS_PER_S.get((backend, precision))
    if rate is None:
        return None
    side = size or info.train_size
    side -= side % 4
    cores = cores or os.cpu_count() or MEASURED_CORES
    return rate * cores / MEASURED_CORES / (generator_macs(info.config, side, side) / 1e9)


def speed_hint(spec: str | Path, path: Path, info: ModelInfo, backend: str, precision: str, log: Log,
               cores: int | None = None) -> None:
    """Tell the user when this CPU path runs the model below SLOW_FPS and a student would be faster."""
    if teacher_of(info):
        return
    fps = estimated_fps(info, backend, precision, cores=cores)
    if fps is None or fps >= SLOW_FPS:
        return
    size = info.train_size - info.train_size % 4
    macs = generator_macs(info.config, size, size) / 1e9
    head = (f"note: {spec} ({macs:.1f} GMACs a frame at {size}x{size}) runs at about {fps:.1f} fps on this CPU with "
            f"{backend} {precision} (estimated from its MACs)")
    students = students_of(path) if path.is_file() else []
    if students:
        ratio = generator_macs(info.config) / generator_macs(students[0].info.config)
        log(f"{head}; its student {students[0].name} is ~{ratio:.0f}x cheaper: add --fast")
    else:
        log(f"{head}; a distilled student (ngf 16, 6 blocks: ~20x cheaper) would be faster: {distill_command(spec)}")
