"""The streaming pieces: the translator stage, frame order through the threaded conversion, batching, worker
errors, output naming, and the writer's timestamps."""

from __future__ import annotations

import queue
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media_helpers import make_clip, one_torch_thread, read_frames, tiny_model  # noqa: F401 (fixtures)
from rtstyle.backends import BackendOptions, create_backend
from rtstyle.io.video import VideoWriter
from rtstyle.pipeline import END, STAGES, FrameTranslator, Worker, get
from rtstyle.transforms import postprocess, preprocess
from rtstyle.video import convert_video, output_paths


@pytest.fixture(scope="module")
def backend(tiny_model):
    return create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu", precision="fp32"))


def test_translator_is_the_pure_transforms_around_the_backend(backend):
    frames = np.random.default_rng(1).integers(0, 256, (2, 30, 41, 3), dtype=np.uint8)
    translator = FrameTranslator(backend, size=32)
    out = translator(frames)
    x, plan = preprocess(frames, 32)
    np.testing.assert_array_equal(out, postprocess(backend.infer(x), plan))
    assert out.shape == frames.shape
    assert set(translator.times.ms_per_frame()) == {"preprocess", "infer", "postprocess"}
    assert translator.times.frames["infer"] == 2


class _FusingSpy:
    """The torch backend, saying it converts frames itself (as OpenVINO does), counting which call ran."""

    fuses_frames = True

    def __init__(self, inner) -> None:
        self.inner, self.info, self.name, self.calls = inner, inner.info, inner.name, []

    def infer(self, x):
        self.calls.append("infer")
        return self.inner.infer(x)

    def submit_frames(self, frames, parallel=1):
        self.calls.append("submit_frames")
        return self.inner.submit_frames(frames, parallel)


def test_a_backend_that_converts_frames_itself_gets_uint8_frames(backend):
    frames = np.random.default_rng(2).integers(0, 256, (2, 30, 41, 3), dtype=np.uint8)
    spy = _FusingSpy(backend)
    np.testing.assert_array_equal(FrameTranslator(spy, size=32)(frames), FrameTranslator(backend, 32)(frames))
    assert spy.calls == ["submit_frames"]
    FrameTranslator(spy, size=None)(frames)  # native 30x41 is no multiple of 4: padded on the tensor path
    assert spy.calls == ["submit_frames", "infer"]


@pytest.fixture(scope="module")
def openvino_backend(tiny_model):
    pytest.importorskip("openvino", reason="needs the [openvino] extra")
    return create_backend(str(tiny_model), BackendOptions(backend="openvino", precision="fp32"))


def test_openvino_runs_one_batch_while_the_last_is_collected(openvino_backend, backend):
    rng = np.random.default_rng(3)
    a, b, c = (rng.integers(0, 256, (1, 32, 48, 3), dtype=np.uint8) for _ in range(3))
    expected = [openvino_backend.infer_frames(f) for f in (a, b, c)]
    first, second = openvino_backend.submit_frames(a), openvino_backend.submit_frames(b)  # two in flight
    b[:] = 0  # the input was copied in when submitted: the caller may reuse its buffer at once
    with pytest.raises(RuntimeError, match="third inference"):  # would overwrite the first's result
        openvino_backend.submit_frames(c)
    np.testing.assert_array_equal(first(), expected[0])
    third = openvino_backend.submit_frames(c)  # its request is free again
    np.testing.assert_array_equal(second(), expected[1])
    np.testing.assert_array_equal(third(), expected[2])
    # and the same as the tensor path on the torch backend, to the rounding of f32 arithmetic
    torch_out = FrameTranslator(backend, None)(a)
    assert np.abs(FrameTranslator(openvino_backend, None)(a).astype(int) - torch_out).max() <= 1


def test_openvino_runs_two_batches_side_by_side_when_asked(openvino_backend):
    # video.convert_video keeps two batches in flight and asks for throughput (parallel=2): on two CPU streams
    # they run at once, each on its own thread, with the results of the one-stream (LATENCY) compile
    from rtstyle.formats.openvino import streams_for

    assert streams_for(2, threads=1) == 1 and streams_for(1) == 1 and streams_for(8, threads=3) == 3
    rng = np.random.default_rng(4)
    a, b = (rng.integers(0, 256, (1, 32, 48, 3), dtype=np.uint8) for _ in range(2))
    expected = [openvino_backend.infer_frames(f) for f in (a, b)]
    first, second = openvino_backend.submit_frames(a, 2), openvino_backend.submit_frames(b, 2)
    got = [first(), second()]
    for g, e in zip(got, expected):
        assert np.abs(g.astype(int) - e).max() <= 1  # f32 sums in another order on one thread
    streams = {key[-1]: r for key, r in openvino_backend.requests.items() if key[1]}  # the uint8-frames compiles
    assert set(streams) == {1, streams_for(2)}
    if streams_for(2) == 2:  # a machine with two cores or more for this process
        compiled = streams[2].pool[0].get_compiled_model()
        assert int(compiled.get_property("NUM_STREAMS")) == 2


@pytest.mark.parametrize("batch,engine", [(1, "torch"), (3, "torch"), (1, "openvino"), (3, "openvino")])
def test_conversion_keeps_frame_order(request, tmp_path, batch, engine):
    # openvino: each batch starts before the last is handed on (FrameTranslator.submit), the last batch short
    src = make_clip(tmp_path / "seq.mp4", frames=8, width=48, height=32)
    translator = FrameTranslator(request.getfixturevalue("backend" if engine == "torch" else "openvino_backend"),
                                 size=32)
    result = convert_video(src, tmp_path / "out.mp4", translator, batch=batch)
    assert result.frames == 8 and result.fps > 0
    assert set(result.times.ms_per_frame()) == set(STAGES)
    # compared on luma: 4:2:0 H.264 keeps it, while the random generator's pixel-level colour noise is lost
    # with the halved chroma resolution
    expected = [luma(translator(f[None])[0]) for f in read_frames(src)]
    written = [luma(f) for f in read_frames(result.output)]
    for i, frame in enumerate(written):
        errors = [np.abs(frame - e).mean() for e in expected]
        assert int(np.argmin(errors)) == i, f"output frame {i} looks like input frame {np.argmin(errors)}"
        assert errors[i] < 6 and errors[i] < 0.5 * sorted(errors)[1], errors  # only the H.264 round trip apart


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])


def test_worker_hands_its_error_to_the_joiner():
    stop = threading.Event()
    out: queue.Queue = queue.Queue(maxsize=1)

    def body(put, stop_event):
        put(1)
        raise OSError("disk on fire")

    worker = Worker("boom", body, out, stop)
    worker.start()
    assert get(out, stop) == 1
    assert get(out, stop) is END  # the consumer still sees the end
    with pytest.raises(OSError, match="disk on fire"):
        worker.join_checked(timeout=5)


def test_worker_blocks_on_a_full_queue_and_ends_on_stop():
    stop = threading.Event()
    out: queue.Queue = queue.Queue(maxsize=2)
    produced = []

    def body(put, stop_event):
        for i in range(100):
            put(i)
            produced.append(i)

    worker = Worker("producer", body, out, stop)
    worker.start()
    worker.join(timeout=0.5)
    assert worker.is_alive() and len(produced) <= 3  # bounded: it waits for the consumer
    stop.set()
    worker.join_checked(timeout=5)
    assert not worker.is_alive()


def test_output_paths(tmp_path):
    a, b = Path("x/a.mp4"), Path("y/b.mkv")
    assert output_paths([a], tmp_path / "o.mkv", "m") == [tmp_path / "o.mkv"]
    assert output_paths([a, b], tmp_path / "dir", "m") == [tmp_path / "dir" / "a_m.mp4", tmp_path / "dir" / "b_m.mp4"]
    assert output_paths([a], tmp_path, "m") == [tmp_path / "a_m.mp4"]  # an existing folder
    with pytest.raises(ValueError, match="must end in"):
        output_paths([a], tmp_path / "o.gif", "m")
    with pytest.raises(ValueError, match="share the name"):
        output_paths([a, Path("z/a.mov")], tmp_path / "dir", "m")


def test_writer_keeps_irregular_timestamps(tmp_path):
    """Variable frame rate: times off the 1/rate grid are written as they are, grid times exactly."""
    times = [Fraction(0), Fraction(1, 10), Fraction(35, 100), Fraction(4, 10), Fraction(1, 2)]
    writer = VideoWriter(tmp_path / "vfr.mp4", 32, 32, Fraction(10), time_base=Fraction(1, 1000))
    for i, t in enumerate(times):
        writer.write(np.full((32, 32, 3), 40 * i, np.uint8), t)
    path = writer.close()
    with av.open(str(path)) as c:
        got = [f.pts * f.time_base for f in c.decode(video=0)]
    assert got == times


def test_writer_refuses_to_overwrite_and_leaves_no_temp_on_discard(tmp_path):
    from rtstyle.io.video import OutputExistsError

    (tmp_path / "o.mp4").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        VideoWriter(tmp_path / "o.mp4", 32, 32, Fraction(25))
    writer = VideoWriter(tmp_path / "p.mp4", 32, 32, Fraction(25))
    writer.write(np.zeros((32, 32, 3), np.uint8), Fraction(0))
    writer.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
