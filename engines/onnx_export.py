"""ONNX export: the generator as an opset-18 graph, checked three ways before it is written.

1. The ONNX checker (full check, with shape inference).
2. The graph itself: InstanceNorm must be exported with inference semantics, i.e. per-image statistics.
   The known pitfall is an exporter (or a model left in train mode, or BatchNorm) that yields a
   BatchNormalization node with running statistics, which runs without error and silently changes the
   output. A warning is not trusted: `check_instance_norm` counts InstanceNormalization nodes (or, if an
   exporter decomposed them, spatial ReduceMean pairs) against the generator's norm layers and refuses
   any BatchNormalization.
3. The numbers: a real ONNX Runtime session against eager fp32 PyTorch on random and real frames
   (`engines.verify`); above the tolerance (1e-4 max abs by default, on outputs in [-1, 1]) the export fails.
The metadata (generator config, direction, input range, size policy, versions) goes into metadata_props.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rtstyle.formats.metadata import new_meta, norm_layer_count, sha256_file
from rtstyle.formats.onnx import OPSET, generator_to_onnx
from rtstyle.io.files import atomic_write
from rtstyle.models import ResnetGenerator
from rtstyle.weights import ModelInfo

from rtstyle.formats.onnx import ONNX_TOLERANCE

from . import verify
from .options import ExportError, ExportOptions, ExportResult, Log



def check_instance_norm(model, info: ModelInfo) -> str:
    """Raise ExportError unless the graph normalises per image; returns a one-line description."""
    ops = Counter(node.op_type for node in model.graph.node)
    expected = norm_layer_count(info)
    if info.config.norm != "instance":
        raise ExportError(f"generator uses {info.config.norm} norm; rtstyle exports InstanceNorm generators only")
    if ops.get("BatchNormalization"):
        raise ExportError(f"the ONNX graph has {ops['BatchNormalization']} BatchNormalization node(s): InstanceNorm "
                          "was exported with running statistics instead of per-image ones")
    found = ops.get("InstanceNormalization", 0)
    if found == expected:
        return f"{found} InstanceNormalization nodes (per-image statistics), no BatchNormalization"
    spatial_means = sum(1 for node in model.graph.node if node.op_type == "ReduceMean" and _spatial_axes(model, node))
    if found == 0 and spatial_means == 2 * expected:  # mean and variance per norm layer
        return f"{expected} decomposed InstanceNorms ({spatial_means} spatial ReduceMean), no BatchNormalization"
    raise ExportError(f"expected {expected} InstanceNormalization nodes (or {2 * expected} spatial ReduceMean), found "
                      f"{found} (and {spatial_means}); ops: {dict(ops)}")


def _spatial_axes(model, node) -> bool:
    """Whether a ReduceMean reduces exactly the spatial axes (2, 3) of an NCHW tensor."""
    import onnx.numpy_helper

    axes = None
    for attr in node.attribute:  # opset < 18: axes attribute
        if attr.name == "axes":
            axes = list(attr.ints)
    if axes is None and len(node.input) > 1:  # opset 18: axes input (an initializer or a Constant node)
        inits = {i.name: i for i in model.graph.initializer}
        if node.input[1] in inits:
            axes = onnx.numpy_helper.to_array(inits[node.input[1]]).tolist()
        for other in model.graph.node:
            if other.op_type == "Constant" and node.input[1] in other.output:
                axes = onnx.numpy_helper.to_array(other.attribute[0].t).tolist()
    return axes is not None and sorted(a % 4 for a in axes) == [2, 3]


def build_checked_onnx(generator: ResnetGenerator, info: ModelInfo, source: Path, options: ExportOptions,
                       log: Log) -> tuple[object, ExportResult]:
    """The ONNX model, checked (checker, graph, ONNX Runtime vs PyTorch), not yet written anywhere."""
    import onnx
    import onnxruntime as ort

    hw = options.shape(info.train_size)
    meta = new_meta(info, "onnx", options.dynamic, *hw, source_sha256=sha256_file(source))
    log(f"exporting to ONNX opset {OPSET} ({meta.size_policy})")
    model = generator_to_onnx(generator, meta)
    onnx.checker.check_model(model, full_check=True)
    graph_note = check_instance_norm(model, info)
    log(f"graph: {graph_note}")

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def run(x):
        import torch

        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])

    results = verify.compare(run, generator, verify.verification_batches(info.config.input_nc, hw, options.dynamic))
    tolerance = options.tolerance or ONNX_TOLERANCE
    result = ExportResult(path=Path(), format="onnx", tolerance=tolerance, comparisons=results, notes=[graph_note])
    log(f"ONNX Runtime vs PyTorch fp32: {verify.describe(results)}")
    if verify.worst(results) > tolerance:
        raise ExportError(f"ONNX output differs from PyTorch by {verify.worst(results):.3g} > tolerance {tolerance:g}; "
                          "nothing was written")
    return model, result


def export_onnx(generator: ResnetGenerator, info: ModelInfo, source: Path, target: Path, options: ExportOptions,
                log: Log, *, overwrite: bool = False) -> ExportResult:
    """Write `target` (.onnx) after every check passed; returns the comparison figures."""
    model, result = build_checked_onnx(generator, info, source, options, log)
    payload = model.SerializeToString()
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(payload), overwrite=overwrite)
    result.path = target
    return result
