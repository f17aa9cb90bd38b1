"""Nothing lost, nothing misleading (issue 15, items 1-6): two runs writing one output, SIGTERM and SIGHUP
mid-conversion and mid-recording, truncated inputs, every audio and subtitle track, stale temporary files
of killed runs, and exports of the bundled model going to the store."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media_helpers import MJPEGServer, make_clip, one_torch_thread, probe, tiny_model  # noqa: F401
from rtstyle.backends import BackendOptions, create_backend
from rtstyle.io.files import OutputAppeared, atomic_write, make_temp, publish, remove_stale_temps_in
from rtstyle.io.images import write_image
from rtstyle.io.video import VideoWriter
from rtstyle.pipeline import FrameTranslator
from rtstyle.video import convert_video, convert_videos
from test_webcam import moving

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True, env=ENV)


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture
def translator(tiny_model):
    return FrameTranslator(create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu")), 32)


# --- item 1: the final step never replaces a file that appeared meanwhile -----------------------------
def _publish_at_barrier(target: str, content: bytes, barrier, results) -> None:
    temp = make_temp(Path(target))
    temp.path.write_bytes(content)
    barrier.wait()  # both processes hold a finished temp: now both take the final step at once
    try:
        publish(temp.path, Path(target), overwrite=False)
        results.put(("won", content))
    except OutputAppeared:
        results.put(("refused", content))
        temp.path.unlink()
    temp.release()


def test_two_processes_at_the_final_step_one_wins_the_other_is_refused(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for round_ in range(10):
        target = tmp_path / f"out{round_}.bin"
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_publish_at_barrier, args=(str(target), name, barrier, results))
                 for name in (b"first", b"second")]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        outcome = sorted(results.get(timeout=5) for _ in procs)
        assert [o for o, _ in outcome] == ["refused", "won"], outcome
        assert target.read_bytes() == dict(outcome)["won"]  # the winner's file, whole
    assert not temps(tmp_path)


def test_overwrite_replaces_at_the_final_step(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"new"), overwrite=True)
    assert target.read_bytes() == b"new"


def test_every_writer_refuses_a_file_that_appeared_meanwhile(tmp_path, tiny_generator):
    """The state after the start check passed and another run finished first: the target is there."""
    from engines.onnx_export import export_onnx
    from engines.options import ExportOptions
    from rtstyle.weights import ModelInfo, save_generator
    from conftest import TINY

    image, weights, onnx = tmp_path / "a.png", tmp_path / "m.safetensors", tmp_path / "m.onnx"
    source = save_generator(tiny_generator, tmp_path / "src.safetensors", ModelInfo(config=TINY, train_size=32))
    for path in (image, weights, onnx):
        path.write_bytes(b"the other run's file")
    with pytest.raises(OutputAppeared, match="appeared while this run was writing it"):
        write_image(image, np.zeros((8, 8, 3), np.uint8), overwrite=False)  # translate
    with pytest.raises(OutputAppeared):
        save_generator(tiny_generator, weights, overwrite=False)  # the store: import-weights, download
    with pytest.raises(OutputAppeared):  # export
        export_onnx(tiny_generator, ModelInfo(config=TINY, train_size=32), source, onnx,
                    ExportOptions(size="32x32"), lambda m: None, overwrite=False)
    for path in (image, weights, onnx):
        assert path.read_bytes() == b"the other run's file"
    assert not temps(tmp_path)


def test_recording_writer_keeps_its_file_beside_one_that_appeared(tmp_path):
    """webcam --record and video share VideoWriter: a recording cannot be made again, so it is kept."""
    out = tmp_path / "rec.mp4"
    writer = VideoWriter(out, 32, 32, Fraction(25))
    for i in range(5):
        writer.write(np.full((32, 32, 3), 40 * i, np.uint8), Fraction(i, 25))
    out.write_bytes(b"the other run's recording")
    with pytest.raises(OutputAppeared) as info:
        writer.close()
    assert info.value.kept == tmp_path / "rec.new.mp4" and str(info.value.kept) in str(info.value)
    assert out.read_bytes() == b"the other run's recording"
    assert decoded_frames(info.value.kept) == 5
    assert not temps(tmp_path)


@pytest.mark.slow
def test_a_later_video_run_does_not_replace_the_earlier_runs_output(tiny_model, tmp_path):
    """Two `video` runs to one --out: B starts first and is held (SIGSTOP) mid-conversion while A runs to
    the end; B, resumed, must not replace A's file, and keeps its own beside it."""
    long_clip = make_clip(tmp_path / "b.mp4", frames=400, width=32, height=32)
    short_clip = make_clip(tmp_path / "a.mp4", frames=6, width=32, height=32)
    out = tmp_path / "race" / "out.mp4"
    b = cli("video", long_clip, "--model", tiny_model, "--out", out, "--size", "32", "--backend", "torch")
    try:
        wait_for(lambda: out.parent.is_dir() and temps(out.parent))  # B passed its start check and is writing
        b.send_signal(signal.SIGSTOP)
        a = subprocess.run([sys.executable, "cli.py", "video", short_clip, "--model", tiny_model, "--out", out,
                            "--size", "32", "--backend", "torch"], cwd=ROOT, capture_output=True, text=True,
                           env=ENV, timeout=300)
        assert a.returncode == 0, a.stderr
        b.send_signal(signal.SIGCONT)
        _, err = b.communicate(timeout=300)
    finally:
        b.kill()
    assert b.returncode == 1, err
    kept = out.with_name("out.new.mp4")
    assert "appeared while this run was writing it" in err and str(kept) in " ".join(err.split()), err
    assert decoded_frames(out) == 6 and decoded_frames(kept) == 400
    assert not temps(out.parent)


# --- item 2: SIGTERM and SIGHUP keep what was made ----------------------------------------------------
@pytest.mark.slow
def test_sigterm_mid_conversion_leaves_a_playable_partial_file(tiny_model, tmp_path):
    src = make_clip(tmp_path / "long.mp4", frames=1000, width=32, height=32, audio="aac")
    out = tmp_path / "long_out.mp4"
    proc = cli("video", src, "--model", tiny_model, "--out", out, "--size", "32", "--backend", "torch")
    try:
        wait_for(lambda: any(p.stat().st_size > 5_000 for p in temps(tmp_path)))  # frames are being written
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    partial = tmp_path / "long_out.partial.mp4"
    assert "interrupted by SIGTERM" in err and str(partial) in " ".join(err.split())
    p = probe(partial)
    assert 0 < p.frames < 1000 and p.audio_codec == "aac"  # every frame decodes (probe decodes them all)
    assert not out.exists() and not temps(tmp_path)


def test_sighup_mid_conversion_is_handled_as_ctrl_c(translator, tmp_path):
    from rtstyle.video import ConversionInterrupted

    src = make_clip(tmp_path / "long.mp4", frames=60, width=32, height=32, audio="aac")

    def on_progress(path, done):
        if done == 10:
            os.kill(os.getpid(), signal.SIGHUP)  # a closed terminal; delivered to the main thread

    before = signal.getsignal(signal.SIGHUP)  # SIG_IGN under nohup, SIG_DFL in a terminal
    with pytest.raises(ConversionInterrupted) as info:
        convert_videos([(src, tmp_path / "out.mp4")], translator, on_progress=on_progress)
    assert (info.value.by, info.value.exit_code) == ("SIGHUP", 129)
    assert info.value.result.output == tmp_path / "out.partial.mp4"
    assert 10 <= decoded_frames(tmp_path / "out.partial.mp4") < 60
    assert signal.getsignal(signal.SIGHUP) is before  # the handler is only there during the conversion


@pytest.mark.slow
def test_sigterm_mid_recording_keeps_a_playable_recording(tiny_model, tmp_path):
    out = tmp_path / "rec.mp4"
    with MJPEGServer(moving, fps=25) as server:
        proc = cli("webcam", "--model", tiny_model, "--source", server.url, "--no-show", "--record", out,
                   "--size", "32", "--backend", "torch")
        try:
            wait_for(lambda: server.sent >= 40 and temps(tmp_path), timeout=60)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 143, err
    assert "interrupted (SIGTERM)" in err and f"recorded -> {out}" in " ".join(err.split())
    assert decoded_frames(out) >= 3 and not temps(tmp_path)


# --- item 3: an input cut short is not reported as complete -------------------------------------------
def _faststart(src: Path, dst: Path) -> Path:
    """`src` remuxed with the index (moov) first, as streaming MP4s are: a cut copy still opens."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for packet in i.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                o.mux(packet)
    return dst


def _cut(path: Path, fraction: float = 0.3) -> Path:
    cut = path.with_name(f"cut_{path.name}")
    data = path.read_bytes()
    cut.write_bytes(data[:int(len(data) * fraction)])
    return cut


def test_truncated_mp4_is_kept_as_partial_and_reported(translator, tmp_path):
    src = _cut(_faststart(make_clip(tmp_path / "a.mp4", frames=60, audio="aac"), tmp_path / "fs.mp4"))
    report = convert_videos([(src, tmp_path / "out.mp4")], translator)
    assert not report.done and len(report.failed) == 1
    message = report.failed[0][1]
    assert "input ended after" in message and "of 60 frames" in message, message
    partial = tmp_path / "out.partial.mp4"
    assert str(partial) in message and not (tmp_path / "out.mp4").exists()
    assert 0 < decoded_frames(partial) < 30


def test_truncated_mkv_fails_the_cli_with_the_frame_counts(tiny_model, tmp_path, capsys):
    from conftest import run_main

    src = _cut(make_clip(tmp_path / "a.mkv", frames=60, time_base=Fraction(1, 1000)))
    assert run_main("video", src, "--model", tiny_model, "--out", tmp_path / "out.mkv", "--size", 32) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "input ended after" in err and "of 60 frames" in err and "0 written, 1 failed" in err, err
    assert not (tmp_path / "out.mkv").exists()
    assert 0 < decoded_frames(tmp_path / "out.partial.mkv") < 30


# --- item 4: every audio and subtitle track ------------------------------------------------------------
def _multitrack(path: Path) -> Path:
    """25 frames, AAC audio tracks in English and French (titled), and French SubRip subtitles."""
    srt = path.with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:00,500\nBonjour\n\n2\n00:00:00,600 --> 00:00:00,900\nAu revoir\n")
    with av.open(str(srt)) as subs, av.open(str(path), "w") as o:
        video = o.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.metadata["language"] = "fra"
        sounds = []
        for lang in ("eng", "fra"):
            sound = o.add_stream("aac", rate=16000, layout="mono")
            sound.metadata.update(language=lang, title=f"{lang} voice")
            sounds.append(sound)
        text = o.add_stream_from_template(subs.streams[0])
        text.metadata["language"] = "fra"
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 9 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            o.mux(video.encode(frame))
        o.mux(video.encode(None))
        for k, sound in enumerate(sounds):
            for start in range(0, 16000, 1024):
                tone = (0.2 * np.sin(2 * np.pi * (300 + 200 * k) * np.arange(start, start + 1024) / 16000))
                chunk = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
                o.mux(sound.encode(chunk))
            o.mux(sound.encode(None))
        for packet in subs.demux(subs.streams[0]):
            if packet.dts is not None:
                packet.stream = text
                o.mux(packet)
    return path


def _tracks(path: Path) -> list[tuple[str, str, str | None]]:
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name, s.metadata.get("language")) for s in c.streams]


def test_all_audio_and_subtitle_tracks_are_kept_with_their_languages(translator, tmp_path):
    src = _multitrack(tmp_path / "multi.mkv")
    result = convert_video(src, tmp_path / "out.mkv", translator)
    assert result.notes == []
    assert _tracks(tmp_path / "out.mkv") == [("video", "h264", "fra"), ("audio", "aac", "eng"), ("audio", "aac", "fra"),
                                              ("subtitle", "srt", "fra")]
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [s.metadata.get("title") for s in c.streams.audio] == ["eng voice", "fra voice"]
        assert [bytes(p) for p in c.demux(subtitles=0) if p.size] == [b"Bonjour", b"Au revoir"]


def test_tracks_the_container_cannot_hold_are_named_in_a_note(translator, tmp_path):
    src = _multitrack(tmp_path / "multi.mkv")
    result = convert_video(src, tmp_path / "out.mp4", translator)
    assert _tracks(tmp_path / "out.mp4") == [("video", "h264", "fra"), ("audio", "aac", "eng"), ("audio", "aac", "fra")]
    assert result.notes == [("subtitle stream 3 (srt, fra) dropped: mp4 cannot hold srt subtitles "
                             "(an .mkv output keeps them)")]


def test_webm_output_from_aac_input_reencodes_to_opus_and_says_so(translator, tmp_path):
    src = make_clip(tmp_path / "a.mp4", frames=25, audio="aac")
    result = convert_video(src, tmp_path / "out.webm", translator)
    assert result.notes == ["audio stream 1 (aac, und): webm cannot hold aac; re-encoded to Opus"]
    p = probe(tmp_path / "out.webm")
    assert p.frames == 25 and p.audio_codec == "opus" and abs(p.audio_duration - 1.0) < 0.1


# --- item 5: temporary files of killed runs are found and removed ---------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_a_rerun_removes_the_temp_of_a_killed_run_with_a_note(tiny_model, tmp_path):
    src = make_clip(tmp_path / "long.mp4", frames=600, width=32, height=32)
    out = tmp_path / "out.mp4"
    proc = cli("video", src, "--model", tiny_model, "--out", out, "--size", "32", "--backend", "torch")
    try:
        wait_for(lambda: temps(tmp_path))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    (left,) = temps(tmp_path)
    assert left.name.startswith(f".out.mp4.rtstyle{proc.pid}.")
    rerun = subprocess.run([sys.executable, "cli.py", "video", make_clip(tmp_path / "short.mp4", frames=3), "--model",
                            tiny_model, "--out", out, "--size", "32", "--backend", "torch"], cwd=ROOT,
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    err = " ".join(rerun.stderr.split())
    assert f"removed {left}, left unfinished by process {proc.pid}" in err, err
    assert not temps(tmp_path) and decoded_frames(out) == 3


def test_only_temps_of_dead_unlocked_writers_are_stale(tmp_path):
    live = make_temp(tmp_path / "last.pt")  # a writer at work: this process, holding the lock
    pid = _dead_pid()
    dead = tmp_path / f".last.pt.rtstyle{pid}.abc123.tmp"
    dead.write_bytes(b"")  # the 0-byte temp a kill -9 during torch.save leaves in a training run
    unlocked_but_alive = tmp_path / f".losses.csv.rtstyle{os.getppid()}.xyz789.tmp"  # pid alive: not yet locked, maybe
    unlocked_but_alive.write_bytes(b"step")
    not_ours = [tmp_path / ".last.pt.tmp", tmp_path / f".notes.{pid}.abc123.tmp"]  # a user's hidden files
    for path in not_ours:
        path.write_bytes(b"")
    assert remove_stale_temps_in(tmp_path) == [f"removed {dead}, left unfinished by process {pid} (killed or crashed)"]
    assert live.path.exists() and not dead.exists() and unlocked_but_alive.exists()
    assert all(path.exists() for path in not_ours)
    live.release()


# --- item 6: exports of the bundled model go to the store ----------------------------------------------
def test_export_of_the_demo_model_goes_to_the_store_and_models_lists_it(isolated_store, capsys):
    import cli
    from rtstyle.store import ASSETS_DIR

    before = sorted(p.name for p in ASSETS_DIR.iterdir())
    assert cli.main(["export", "--model", "demo", "--format", "onnx", "--size", "32x32"]) == 0
    assert sorted(p.name for p in ASSETS_DIR.iterdir()) == before
    assert (isolated_store / "demo-32x32.onnx").is_file()
    capsys.readouterr()
    assert cli.main(["models"]) == 0
    listed = capsys.readouterr().out
    assert f"demo-32x32.onnx\tonnx artifact\t{isolated_store / 'demo-32x32.onnx'}" in listed, listed
