"""OpenVINO IR: making it from a generator, reading its metadata, and the process's one Core that compiles it.

`generator_to_openvino` converts the torch module (InstanceNorm becomes one MVN op), `write_rt_info` /
`read_openvino_meta` store and read the artifact metadata in the IR's rt_info, `save_openvino` writes the
.xml + .bin so that no reader sees half of them, and `cached_openvino` is the on-the-fly conversion of a
weights file that `--backend openvino` runs (cached by content hash). `openvino_core` and `compile_cpu` are
here rather than in the backend because the int8 format (`rtstyle.formats.int8`) compiles to measure its
accuracy and a format never imports a backend. openvino is imported inside the functions.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..cpu import cpu_features
from ..errors import BackendUnavailable
from ..io.files import writes_to
from ..models import ResnetGenerator
from .metadata import (INPUT_NAME, OUTPUT_NAME, PREFIX, ArtifactError, ArtifactMeta, artifact_kind, cached_conversion,
                       library_versions)

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
# OpenVINO's f32 CPU kernels (Winograd convolutions, its MVN) are a little further from float64 than
# PyTorch's or ONNX Runtime's: 1.4e-4 max abs measured on the full generator (ONNX Runtime: 2e-5), worst on
# low-contrast inputs. 5e-4 is still 15x below one uint8 level.
OPENVINO_TOLERANCE = 5e-4


def import_openvino():
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailable(f"the openvino backend needs OpenVINO ({e}); install it with "
                                 "`pip install -e '.[openvino]'`") from None
    return openvino


@functools.cache
def openvino_core():
    """The process's one OpenVINO Core, created on first use and never released.

    OpenVINO's CPU plugin installs its own alternate signal stack on the thread that first compiles a model
    (usually the main thread) and unmaps it when the plugin unloads with the last Core, restoring the old
    one only on the thread that drops that Core. Dropped from another thread (a pipeline worker, the garbage
    collector), the main thread keeps a dangling alternate stack, and the next signal it handles, a Ctrl-C,
    kills the process with SIGSEGV instead of raising KeyboardInterrupt (tests/test_backends.py reproduces
    it). One Core for the process's lifetime keeps the plugin, and that stack, loaded.
    """
    return import_openvino().Core()


def cpu_capabilities() -> set[str]:
    """OpenVINO's CPU optimisation capabilities, e.g. {'FP32', 'BF16', 'INT8'}; empty without openvino.

    'BF16' counts only where `rtstyle.cpu`'s probe finds native bf16: OpenVINO reads CPUID itself and so
    ignores the probe's overrides (and lists BF16 under ONEDNN_MAX_CPU_ISA=AVX2, where no bf16 kernel runs).
    """
    try:
        core = openvino_core()
    except BackendUnavailable:
        return set()
    capabilities = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return capabilities if cpu_features().bf16 else capabilities - {"BF16"}


def streams_for(parallel: int, threads: int | None = None) -> int:
    """CPU streams for `parallel` requests at once: one each, while every stream keeps a thread of its own
    (`threads`, or the cores this process may use). One stream of every thread is the LATENCY compile.

    Two single-thread streams beat one stream of two threads for a file conversion on this project's 2-core
    CPUs (BENCHMARKS.md, "Zen 4 again, and two CPU streams for a file"): a thread of a one-stream inference
    that the decoder or encoder preempts holds up the other at every layer's barrier, where two streams only
    slow one frame.
    """
    if parallel <= 1:  # every live frame and bare call asks: no system call for it
        return 1
    cores = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return max(1, min(parallel, cores))


def compile_cpu(model, hint: str, shape: tuple[int, ...] | None = None, threads: int | None = None,
                frames: bool = False, streams: int = 1):
    """Compile for the CPU: with the LATENCY hint (one stream, every thread on one request: a live frame), or,
    with `streams` > 1, that many streams sharing the threads, so as many requests run side by side (a file
    conversion with batches in flight, whose throughput is what counts, not one frame's latency).

    `hint` is OpenVINO's INFERENCE_PRECISION_HINT ("f32", "bf16"); `shape` reshapes a copy of the model to
    that static input shape first (faster kernels for int8 IRs; the IR on disk keeps its own shape), given
    as the generator's (b, 3, h, w). `frames`: the compiled model takes and returns uint8 frames (see
    `frames_io`).
    """
    core = openvino_core()
    if shape is not None or frames:
        model = model.clone()
    if shape is not None:
        model.reshape(list(shape))
    if frames:
        model = frames_io(model)
    config = {"INFERENCE_PRECISION_HINT": hint}
    if streams > 1:
        config["NUM_STREAMS"] = streams
    else:
        config["PERFORMANCE_HINT"] = "LATENCY"
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(model, "CPU", config)


class Requests:
    """Two infer requests of one compiled model, used in turn, so one can run (`start`) while the caller fills
    the next: with the LATENCY hint they run one after the other on every thread, and the Python work between
    two frames (queues, batching, hand-offs) overlaps the inference instead of adding to it; compiled with two
    streams (`compile_cpu(streams=2)`) they run side by side, each on its share of the threads."""

    def __init__(self, compiled) -> None:
        self.pool = [compiled.create_infer_request() for _ in range(2)]
        self.output = compiled.output(0)
        self.turn = 0
        self.outstanding = [False, False]  # started and not yet collected

    def infer(self, array: np.ndarray) -> np.ndarray:
        """The output for `array`, now (a copy: the request's own buffer is reused)."""
        return self.start(array)[1]()

    def start(self, array: np.ndarray) -> tuple[Callable[[], None], Callable[[], np.ndarray]]:
        """Start inference on (a copy of) `array`; returns (wait, result): `wait()` returns once the output is
        ready, `result()` waits for it and returns a copy. At most two may be outstanding: a third start
        before the first result is collected is an error (it would overwrite that result)."""
        turn = self.turn
        if self.outstanding[turn]:
            raise RuntimeError("OpenVINO: a third inference started before the first of two was collected")
        request, self.turn = self.pool[turn], turn ^ 1
        self.outstanding[turn] = True
        request.start_async({INPUT_NAME: np.ascontiguousarray(array)})  # inputs are copied in (share_inputs off)

        def result() -> np.ndarray:
            request.wait()
            self.outstanding[turn] = False
            return request.get_tensor(self.output).data.copy()

        return request.wait, result


def frames_io(model):
    """`model` wrapped by OpenVINO's PrePostProcessor to take uint8 RGB frames (b, h, w, 3) and return them.

    Inside the graph, the exact arithmetic of `transforms.frames_to_tensor` / `tensor_to_frames`: x / 127.5 - 1
    in, then clamp to [-1, 1], (y + 1) * 127.5, round half to even, uint8 out, with both transposes. Done
    there, the conversions run in OpenVINO's threads and vectorised kernels, fused with the first and last
    layers, instead of five passes of numpy/torch in the Python thread that waits for the next frame (issue
    13: 3.8 ms of a 25 ms int8 frame at 256x456 on this project's 2-core CPUs).
    """
    ov = import_openvino()
    from openvino import opset13 as ops
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    source = ppp.input(INPUT_NAME)
    source.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    source.model().set_layout(ov.Layout("NCHW"))
    source.preprocess().convert_element_type(ov.Type.f32).scale(127.5).mean(1.0)

    def to_levels(node):
        y = ops.clamp(node, -1.0, 1.0)
        y = ops.multiply(ops.add(y, np.float32(1.0)), np.float32(127.5))
        return ops.round(y, "half_to_even").output(0)

    result = ppp.output(0)
    result.model().set_layout(ov.Layout("NCHW"))
    result.postprocess().custom(to_levels)
    result.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    return ppp.build()


def load_openvino_model(model_path: Path, log: Callable[[str], None] | None = None, kind: str | None = None):
    """(openvino.Model, ArtifactMeta) for an IR, an ONNX file or weights (converted once, then cached); `kind`
    is the artifact kind when the caller resolved it already (`ModelRef.kind`)."""
    from .onnx import load_onnx, read_onnx_meta

    core = openvino_core()
    kind = kind or artifact_kind(model_path)
    if kind == "openvino":
        xml = openvino_xml(model_path)
        model = read_ir(xml)
        return model, read_openvino_meta(model, str(xml))
    if kind == "onnx":
        meta = read_onnx_meta(load_onnx(model_path), str(model_path))
        return read_ir(model_path), meta
    if kind == "weights":
        xml = cached_openvino(Path(model_path), log)
        model = core.read_model(str(xml))
        return model, read_openvino_meta(model, str(xml))
    raise ArtifactError(f"{model_path}: OpenVINO cannot run a {kind} artifact; use --backend {kind}")


def read_ir(path: Path):
    """`Core.read_model` of a user's .xml (or .onnx), or an ArtifactError naming the file instead of the
    RuntimeError OpenVINO raises for a corrupt .xml, a missing or short .bin, or a file that is no model."""
    try:
        return openvino_core().read_model(str(path))
    except RuntimeError as e:
        # OpenVINO prefixes each C++ frame ("Exception from src/...cpp:84: "); the last sentence is the reason.
        detail = re.sub(r"Exception from \S+: ", "", " ".join(str(e).split())).split(" Please check")[0][:160]
        bin_hint = f" and its {Path(path).with_suffix('.bin').name}" if Path(path).suffix == ".xml" else ""
        raise ArtifactError(f"{path}: OpenVINO cannot read this model ({detail}); the file{bin_hint} must be "
                            "complete and written by `python cli.py export --format openvino`: export it "
                            "again") from None


def openvino_xml(path: str | Path) -> Path:
    """The .xml of an OpenVINO IR given as the .xml itself or as the folder holding it."""
    path = Path(path)
    if path.is_file():
        return path
    xmls = sorted(path.glob("*.xml"))
    if len(xmls) != 1:
        raise ArtifactError(f"{path}: an OpenVINO folder must hold exactly one .xml (with its .bin), "
                            f"found {[p.name for p in xmls]}")
    return xmls[0]


def generator_to_openvino(generator: ResnetGenerator, meta: ArtifactMeta, batch: int | None = None):
    """The generator as an `openvino.Model` (converted from the torch module) with `meta` in its rt_info.

    `batch` fixes the batch size as well (with a fixed-size `meta`): the int8 path calibrates and compiles
    fully static graphs, the recipe measured for issue 6 (a static IR can still be reshaped to another batch
    size before compiling).

    OpenVINO's PyTorch frontend turns aten::instance_norm into MVN (per-image mean/variance), the
    inference semantics we want; `engines.openvino_export` checks the op counts.
    """
    import openvino as ov

    generator = generator.eval().float().cpu()
    h, w = (-1, -1) if meta.dynamic else (meta.height, meta.width)
    example = torch.zeros(1, generator.config.input_nc, 64 if meta.dynamic else h, 64 if meta.dynamic else w)
    # From the nn.Module (OpenVINO traces it): InstanceNorm becomes one MVN op. Converting a torch.export
    # program instead decomposes it into ReduceMean/Sub/Sqrt chains (slower); the ONNX route adds shape
    # subgraphs. torch.jit's deprecation warnings from that tracing are OpenVINO's business, not the user's.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = ov.convert_model(generator, example_input=example,
                                 input=[ov.PartialShape([batch or -1, generator.config.input_nc, h, w])])
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    write_rt_info(model, meta.with_format("openvino", opset=None, versions=library_versions("torch", "openvino")))
    return model


def write_rt_info(model, meta: ArtifactMeta) -> None:
    """Store `meta` in the model's rt_info under "rtstyle" (saved in the .xml, read by `read_openvino_meta`)."""
    for key, value in meta.to_strings().items():
        model.set_rt_info(value, ["rtstyle", key[len(PREFIX):]])


def read_openvino_meta(model, where: str = "OpenVINO model") -> ArtifactMeta:
    if not model.has_rt_info(["rtstyle", "model"]):
        return ArtifactMeta.from_strings({}, where)  # raises with the explanation
    rt = model.get_rt_info()["rtstyle"]
    strings = {f"rtstyle.{key}": model.get_rt_info(["rtstyle", key]).astype(str) for key in rt.keys()}
    return ArtifactMeta.from_strings(strings, where)


@writes_to(1)
def save_openvino(model, xml_path: Path, *, overwrite: bool = True) -> Path:
    """Write an IR (.xml + .bin) so that a reader never sees half of it: both go to a temporary folder first.

    Weights stay f32 (`compress_to_fp16=False`, whose default would round them to fp16): the inference
    precision is chosen at load time from the CPU, and f32 weights keep the f32 path exact. `overwrite=False`
    (an export to a name checked free at start): an IR that appeared meanwhile is not replaced
    (`OutputAppeared`, nothing of this run left in place).
    """
    import shutil

    import openvino as ov

    from ..io.files import make_temp, publish

    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin")
    temp = make_temp(xml_path, folder=True)
    tmp = temp.path
    try:
        ov.save_model(model, str(tmp / xml_path.name), compress_to_fp16=False)
        publish(tmp / bin_path.name, bin_path, overwrite=overwrite)  # .bin first: an .xml never points at no .bin
        try:
            publish(tmp / xml_path.name, xml_path, overwrite=overwrite)
        except FileExistsError:  # the .xml appeared meanwhile: the .bin just placed belongs to no .xml of ours
            bin_path.unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        temp.release()
    return xml_path


def openvino_runner(xml_path: Path):
    """`x -> y` through the IR at `xml_path`, compiled in f32 as the backend compiles it."""
    compiled = compile_cpu(openvino_core().read_model(str(xml_path)), "f32")
    return lambda x: torch.from_numpy(np.array(compiled({0: x.numpy()})[0], dtype=np.float32))


def cached_openvino(weights_path: Path, log: Callable[[str], None] | None = None) -> Path:
    """A dynamic OpenVINO IR (.xml + .bin) of a weights file, made once, checked against PyTorch, cached."""
    def make(target: Path, generator: ResnetGenerator, meta: ArtifactMeta) -> None:
        save_openvino(generator_to_openvino(generator, meta), target)

    return cached_conversion(Path(weights_path), "openvino", ".xml", make, log,
                             check=(openvino_runner, OPENVINO_TOLERANCE))
