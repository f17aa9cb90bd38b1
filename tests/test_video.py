"""`cli.py video`: frame count, exact rate, size, rotation and audio kept; several inputs; bad input; Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import run_main
from media_helpers import (REAL_CLIP, make_clip, one_torch_thread, probe, read_frames, tiny_model,  # noqa: F401
                           x264_options)
from rtstyle.backends import BackendOptions, create_backend
from rtstyle.video import ConversionInterrupted, convert_videos
from rtstyle.pipeline import FrameTranslator

ROOT = Path(__file__).resolve().parents[1]


def assert_same_timing(src: Path, out: Path) -> None:
    a, b = probe(src), probe(out)
    assert (b.width, b.height) == (a.width, a.height)
    assert b.frames == a.frames
    assert b.rate == a.rate, f"rate {b.rate} != {a.rate}"
    assert abs(b.duration - a.duration) < 0.5 / float(a.rate)
    assert b.rotation == a.rotation


def test_real_clip_keeps_frames_rate_size_and_duration(tiny_model, tmp_path, capsys):
    out = tmp_path / "bottle_out.mp4"
    assert run_main("video", REAL_CLIP, "--model", tiny_model, "--out", out, "--size", "64") == 0
    assert_same_timing(REAL_CLIP, out)
    assert probe(REAL_CLIP).rate == Fraction(179, 6)  # the 29.83 fps of the original footage
    err = capsys.readouterr().err
    for stage in ("decode", "preprocess", "infer", "postprocess", "encode", "fps overall"):
        assert stage in err
    # the output is the translation, not a copy of the input
    src, dst = read_frames(REAL_CLIP)[5], read_frames(out)[5]
    assert abs(src.astype(int) - dst.astype(int)).mean() > 10
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_audio_is_copied_not_reencoded(tiny_model, tmp_path):
    src = make_clip(tmp_path / "talk.mp4", frames=15, rate=Fraction(25, 2), audio="aac")
    out = tmp_path / "talk_out.mp4"
    assert run_main("video", src, "--model", tiny_model, "--out", out, "--size", "32") == 0
    assert_same_timing(src, out)
    a, b = probe(src), probe(out)
    assert b.audio_codec == a.audio_codec == "aac"
    assert abs(b.audio_duration - a.audio_duration) <= 1 / float(a.rate)
    assert b.audio_packets == a.audio_packets  # remuxed: the very same bytes


def test_audio_the_container_cannot_hold_is_reencoded_and_said(tiny_model, tmp_path, capsys):
    src = make_clip(tmp_path / "talk.mkv", frames=10, audio="libopus")  # MOV has no Opus mapping
    out = tmp_path / "talk_out.mov"
    assert run_main("video", src, "--model", tiny_model, "--out", out, "--size", "32") == 0
    assert "cannot hold opus; re-encoded to AAC" in capsys.readouterr().err
    a, b = probe(src), probe(out)
    assert (a.audio_codec, b.audio_codec) == ("opus", "aac")
    assert abs(b.audio_duration - a.audio_duration) <= 0.1


def test_odd_size_and_non_integer_rate_native_size(tiny_model, tmp_path):
    src = make_clip(tmp_path / "odd.mp4", frames=6, width=642, height=362, rate=Fraction(25, 2))
    out = tmp_path / "odd_out.mp4"
    assert run_main("video", src, "--model", tiny_model, "--out", out, "--size", "native") == 0
    assert_same_timing(src, out)
    assert probe(out).rate == Fraction(25, 2)


def test_millisecond_timestamps_keep_the_exact_rate(tiny_model, tmp_path):
    # Matroska stores 1/1000 s ticks: 30 fps becomes 0, 33, 67 ms; the output must still say exactly 30 fps
    src = make_clip(tmp_path / "cam.mkv", frames=10, rate=Fraction(30))
    assert probe(src).rate == 30
    out = tmp_path / "cam_out.mp4"
    assert run_main("video", src, "--model", tiny_model, "--out", out, "--size", "32") == 0
    b = probe(out)
    assert (b.rate, b.frames) == (Fraction(30), 10)
    assert abs(b.duration - 10 / 30) < 1e-3


def test_rotation_metadata_is_kept(tiny_model, tmp_path):
    src = make_clip(tmp_path / "phone.mp4", frames=4, width=48, height=32, rotation=90)
    assert probe(src).rotation == 90
    out = tmp_path / "phone_out.mp4"
    assert run_main("video", src, "--model", tiny_model, "--out", out, "--size", "32") == 0
    assert_same_timing(src, out)  # rotation included, frames stay 48x32 as stored


def test_several_inputs_write_stem_model_files(tiny_model, tmp_path):
    (tmp_path / "in").mkdir()
    a = make_clip(tmp_path / "in" / "a.mp4", frames=3)
    b = make_clip(tmp_path / "in" / "b.mkv", frames=4, width=48, height=32)
    out = tmp_path / "out"
    assert run_main("video", tmp_path / "in", "--model", tiny_model, "--out", out, "--size", "32") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_tiny.mp4", "b_tiny.mp4"]
    assert probe(out / "a_tiny.mp4").frames == 3
    assert (probe(out / "b_tiny.mp4").frames, probe(out / "b_tiny.mp4").width) == (4, 48)
    assert probe(a).frames == 3


def test_undecodable_input_is_skipped_and_exit_code_says_so(tiny_model, tmp_path, capsys):
    good = make_clip(tmp_path / "good.mp4", frames=3)
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    out = tmp_path / "out"
    assert run_main("video", bad, good, "--model", tiny_model, "--out", out, "--size", "32") == 1
    err = capsys.readouterr().err
    assert "notes.mp4" in err and "not a readable video" in err
    assert (out / "good_tiny.mp4").exists() and not (out / "notes_tiny.mp4").exists()


def test_missing_input_is_an_error(tiny_model, tmp_path, capsys):
    assert run_main("video", tmp_path / "nope.mp4", "--model", tiny_model, "--out", tmp_path / "o.mp4") == 2
    assert "input not found" in capsys.readouterr().err


def test_existing_output_needs_overwrite(tiny_model, tmp_path, capsys):
    src = make_clip(tmp_path / "c.mp4", frames=3)
    out = tmp_path / "c_out.mp4"
    out.write_bytes(b"precious")
    assert run_main("video", src, "--model", tiny_model, "--out", out, "--size", "32") == 1
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert run_main("video", src, "--model", tiny_model, "--out", out, "--size", "32", "--overwrite") == 0
    assert probe(out).frames == 3


def test_several_inputs_refuse_a_file_output(tiny_model, tmp_path, capsys):
    a, b = make_clip(tmp_path / "a.mp4", frames=2), make_clip(tmp_path / "b.mp4", frames=2)
    assert run_main("video", a, b, "--model", tiny_model, "--out", tmp_path / "x.mp4") == 2
    assert "need a folder" in capsys.readouterr().err


def test_ctrl_c_leaves_a_playable_partial_file(tiny_model, tmp_path):
    """A real SIGINT while frames are being encoded: what was translated is kept as <stem>.partial.mp4."""
    src = make_clip(tmp_path / "long.mp4", frames=60, rate=Fraction(25), audio="aac")
    dst = tmp_path / "long_out.mp4"
    translator = FrameTranslator(create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu")), 32)

    def on_progress(path, done):
        if done == 10:
            os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread, as a terminal's Ctrl-C is

    with pytest.raises(ConversionInterrupted) as info:
        convert_videos([(src, dst)], translator, on_progress=on_progress)
    result = info.value.result
    assert not dst.exists()
    assert result.output == tmp_path / "long_out.partial.mp4" and result.partial
    p = probe(result.output)
    assert 10 <= p.frames < 60 and p.frames == result.frames
    assert p.audio_codec == "aac" and p.audio_duration <= p.duration + 0.1  # audio cut where the video ends
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.slow
def test_cli_ctrl_c_says_where_the_partial_file_is(tiny_model, tmp_path):
    src = make_clip(tmp_path / "long.mp4", frames=3000, width=32, height=32, rate=Fraction(25))
    out = tmp_path / "long_out.mp4"
    proc = subprocess.Popen([sys.executable, "cli.py", "video", str(src), "--model", str(tiny_model), "--out",
                             str(out), "--size", "96"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".long_out.*.tmp.mp4")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # let some frames through
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    partial = tmp_path / "long_out.partial.mp4"
    assert "interrupted" in err and str(partial) in err and "partial" in err
    assert 0 < probe(partial).frames < 3000
    assert not out.exists()


def test_output_that_is_the_input_or_its_folder_is_refused(tiny_model, tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    clip = make_clip(clips / "a.mp4", frames=3)
    before = clip.read_bytes()
    for inputs, out, expected in [((clip,), clip, "would be the input"), ((clips,), clips, "also an input folder")]:
        capsys.readouterr()
        assert run_main("video", *inputs, "--model", tiny_model, "--out", out, "--overwrite") == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    assert clip.read_bytes() == before and [p.name for p in clips.iterdir()] == ["a.mp4"]


def test_read_only_output_folder_is_one_line(tiny_model, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        clip = make_clip(tmp_path / "a.mp4", frames=3)
        assert run_main("video", clip, "--model", tiny_model, "--out", ro / "out.mp4") == 2
        err = capsys.readouterr().err
        assert f"cannot write {ro / 'out.mp4'}: it is on a read-only file system" in err and "Traceback" not in err
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_preset_reaches_the_encoder_and_auto_picks_by_the_model(tiny_model, tmp_path, capsys):
    from rtstyle.models import GeneratorConfig, ResnetGenerator
    from rtstyle.video import choose_preset
    from rtstyle.weights import ModelInfo, save_generator

    src = make_clip(tmp_path / "in.mp4", frames=6)
    fast, slow = tmp_path / "fast.mp4", tmp_path / "slow.mp4"
    assert run_main("video", src, "--model", tiny_model, "--out", fast, "--size", "32") == 0
    assert "x264 ultrafast (auto: a light model (" in capsys.readouterr().err  # ngf 8: a light model
    assert run_main("video", src, "--model", tiny_model, "--out", slow, "--size", "32", "--preset", "veryfast") == 0
    assert "x264 veryfast" in capsys.readouterr().err
    # what x264 itself says it ran: ultrafast turns CABAC and the deblocking filter off, veryfast keeps them
    assert "cabac=0" in x264_options(fast) and "deblock=0" in x264_options(fast)
    assert "cabac=1" in x264_options(slow) and "deblock=1" in x264_options(slow)
    assert probe(fast).frames == probe(slow).frames == 6

    heavy = save_generator(ResnetGenerator(GeneratorConfig()), tmp_path / "full.safetensors",
                           ModelInfo(config=GeneratorConfig(), name="full"))  # the reference ngf 64, 9 blocks
    full = create_backend(heavy, BackendOptions(backend="torch"))
    assert choose_preset("auto", full)[0] == "veryfast"
    assert choose_preset("slow", full) == ("slow", "")
    assert choose_preset("auto", create_backend(tiny_model, BackendOptions(backend="torch")))[0] == "ultrafast"


def test_unknown_preset_is_refused_before_anything_is_written(tiny_model, tmp_path, capsys):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    with pytest.raises(SystemExit):
        run_main("video", src, "--model", tiny_model, "--out", tmp_path / "o.mp4", "--preset", "turbo")
    assert "invalid choice: 'turbo'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_an_asked_preset_on_a_webm_output_is_said_not_to_apply(tiny_model, tmp_path, capsys):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    assert run_main("video", src, "--model", tiny_model, "--out", tmp_path / "o.webm", "--size", "32") == 0
    assert "H.264 (x264) setting" not in capsys.readouterr().err  # auto: nothing was asked
    assert run_main("video", src, "--model", tiny_model, "--out", tmp_path / "p.webm", "--size", "32",
                    "--preset", "slow") == 0
    assert "--preset slow is an H.264 (x264) setting; .webm outputs are VP9" in capsys.readouterr().err
    assert probe(tmp_path / "p.webm").frames == 3


def bt601_limited(rgb) -> "np.ndarray":
    """The exact BT.601 limited-range 4:2:0 of an RGB frame (float): Y, then each 2x2 block's mean Cb, Cr."""
    import numpy as np

    h, w = rgb.shape[:2]
    r, g, b = (rgb[..., i].astype(float) for i in range(3))
    y = 16 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    cb = 128 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    cr = 128 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    box = [c.reshape(h // 2, 2, w // 2, 2).mean((1, 3)).reshape(-1, w) for c in (cb, cr)]
    return np.concatenate([y, *box])


def test_colour_conversions_are_bt601_and_other_colours_stay_with_swscale():
    """The reader's and writer's own RGB <-> 4:2:0 (OpenCV, a fraction of swscale's CPU time) against the
    BT.601 formula; a BT.709 or full-range frame is left to swscale, which reads its tags."""
    import av
    import numpy as np

    from rtstyle.io.video import frame_rgb, rgb_to_i420

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (36, 64, 3), dtype=np.uint8)  # fine colour detail: chroma must be averaged
    i420 = rgb_to_i420(noise)
    assert i420.shape == (54, 64) and np.abs(i420 - bt601_limited(noise)).max() <= 1.5
    swscale = av.VideoFrame.from_ndarray(noise, format="rgb24").reformat(format="yuv420p").to_ndarray()
    assert np.abs(i420[:36].astype(int) - swscale[:36]).max() <= 1  # the same luma as swscale's

    with av.open(str(REAL_CLIP)) as container:
        frame = next(container.decode(video=0))
    assert frame.format.name == "yuv420p" and frame.colorspace == 2  # untagged: BT.601 to swscale too
    yuv = frame.to_ndarray(format="yuv420p").astype(float)
    h, w = frame.height, frame.width
    ys, cs = yuv[:h] - 16, [np.repeat(np.repeat(p.reshape(h // 2, w // 2), 2, 0), 2, 1) - 128
                            for p in (yuv[h:h + h // 4], yuv[h + h // 4:])]
    exact = np.stack([1.164383 * ys + 1.596027 * cs[1], 1.164383 * ys - 0.391762 * cs[0] - 0.812968 * cs[1],
                      1.164383 * ys + 2.017232 * cs[0]], -1).clip(0, 255)
    ours, theirs = frame_rgb(frame), frame.to_ndarray(format="rgb24")
    assert np.abs(ours - exact).mean() < 0.5 and np.abs(ours - exact).mean() < np.abs(theirs - exact).mean()
    for tag, value in (("colorspace", 1), ("color_range", 2)):  # BT.709; full range (JPEG levels)
        setattr(frame, tag, value)
        assert np.array_equal(frame_rgb(frame), frame.to_ndarray(format="rgb24")), tag
        setattr(frame, tag, {"colorspace": 2, "color_range": 0}[tag])
