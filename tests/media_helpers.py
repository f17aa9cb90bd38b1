"""Media made on the fly for the runtime tests: clips (with audio, odd sizes, any rate), a real MJPEG-over-HTTP
server on 127.0.0.1, tiny generators, and probing what a written file holds."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from rtstyle.models import GeneratorConfig, ResnetGenerator
from rtstyle.weights import ModelInfo, save_generator

DATA = Path(__file__).parent / "data"
REAL_CLIP = DATA / "bottle-30f.mp4"  #X


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny generators gain nothing from several threads, and on a shared 2-core machine OpenMP's spinning
    threads make them 10-50x slower; restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """ngf 8, 2 blocks, random init (seeded): fast, and its output differs visibly from its input."""
    torch.manual_seed(0)
    generator = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=2))
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    return save_generator(generator, path, ModelInfo(config=generator.config, direction="a->b", name="tiny"))


def pattern(i: int, h: int, w: int) -> np.ndarray:
    """Frame i: a moving gradient whose colours change with i, so neighbouring frames differ."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1) + 9 * i) % 256
    g = (y * 255 // max(h - 1, 1) + 5 * i) % 256
    b = np.full_like(r, (40 * i) % 256)
    return np.stack([r, g, b], axis=2).astype(np.uint8)


def make_clip(path: Path, frames: int = 12, width: int = 64, height: int = 48, rate: Fraction = Fraction(25),
              audio: str | None = None, rotation: int = 0, time_base: Fraction | None = None) -> Path:
    """Encode a test clip with PyAV: H.264, an optional tone as long as the video (`audio`: the encoder,
    'aac' or 'libopus'), display rotation."""
    rate = Fraction(rate)
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=rate, options={"crf": "20", "preset": "ultrafast"})
    video.width, video.height = width, height
    video.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    tb = time_base or Fraction(1, rate.numerator * 100)
    video.time_base = video.codec_context.time_base = tb
    if rotation:
        video.set_display_rotation(rotation)
    sample_rate = 48000 if audio == "libopus" else 16000  # Opus knows only 8/12/16/24/48 kHz; 48 is its default
    sound = container.add_stream(audio, rate=sample_rate, layout="mono") if audio else None
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(pattern(i, height, width), format="rgb24")
        frame.pts = round(Fraction(i) / rate / tb)
        frame.time_base = tb
        container.mux(video.encode(frame))
    container.mux(video.encode(None))
    if sound is not None:
        total, step = int(frames / rate * sample_rate), sound.codec_context.frame_size or 1024
        for start in range(0, total, step):
            n = min(step, total - start)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(start, start + n) / sample_rate)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")  # PyAV converts
            chunk.sample_rate, chunk.pts = sample_rate, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    container.close()
    return path


@dataclass
class Probe:
    width: int
    height: int
    rate: Fraction
    frames: int  # decoded, not the header's count
    duration: float  # container duration in seconds
    rotation: int
    audio_codec: str | None
    audio_duration: float | None
    audio_packets: list[bytes]


def probe(path: Path) -> Probe:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        decoded = list(c.decode(v))
        rate, duration = v.average_rate, c.duration / av.time_base
    audio_codec = audio_duration = None
    packets: list[bytes] = []
    with av.open(str(path)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            audio_codec = a.codec_context.name
            stamps = []
            for p in c.demux(a):
                if p.dts is not None:
                    packets.append(bytes(p))
                    stamps.append(((p.pts or 0) + (p.duration or 0)) * p.time_base)
            audio_duration = float(max(stamps)) if stamps else 0.0
    return Probe(decoded[0].width, decoded[0].height, rate, len(decoded), duration, int(decoded[0].rotation or 0),
                 audio_codec, audio_duration, packets)


def read_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# --- a live MJPEG stream over HTTP ------------------------------------------------------------------------
def stamp_index(image: np.ndarray, index: int, bits: int = 12) -> np.ndarray:
    """Write `index` into the top row of 8x8 blocks (white = 1), readable after JPEG compression."""
    out = image.copy()
    for b in range(bits):
        out[0:8, b * 8:(b + 1) * 8] = 255 if (index >> b) & 1 else 0
    return out


def read_index(image: np.ndarray, bits: int = 12) -> int:
    assert image.shape[1] >= 8 * bits, "frame too narrow for the stamped index"
    return sum(1 << b for b in range(bits) if image[2:6, b * 8 + 2:b * 8 + 6].mean() > 127)


class MJPEGServer:
    """Serves multipart/x-mixed-replace JPEG frames at `fps` from a thread; `sent` is the last index sent.

    `frame_fn(i) -> RGB image`; every frame carries its index (`stamp_index`) unless `stamp` is False.
    `stop_after` closes the connection and stops listening after that many frames (a stream that drops);
    `per_connection` closes each connection after that many frames but keeps accepting (a flapping server).
    """

    def __init__(self, frame_fn, fps: float = 25.0, stamp: bool = True, stop_after: int | None = None,
                 per_connection: int | None = None) -> None:
        self.frame_fn, self.fps, self.stamp, self.stop_after = frame_fn, fps, stamp, stop_after
        self.per_connection, self.connections = per_connection, 0
        self.sent = -1
        self.sent_at: dict[int, float] = {}
        self.closed = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path != "/stream.mjpg":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                server._serve(self.wfile)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _serve(self, wfile) -> None:
        i = first = self.sent + 1
        self.connections += 1
        next_time = time.monotonic()
        try:
            while not self.closed.is_set():
                if self.per_connection is not None and i - first >= self.per_connection:
                    return
                if self.stop_after is not None and i >= self.stop_after:
                    threading.Thread(target=self.close, daemon=True).start()
                    return
                rgb = self.frame_fn(i)
                if self.stamp:
                    rgb = stamp_index(rgb, i)
                ok, jpg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                            + jpg.tobytes() + b"\r\n")
                wfile.flush()
                self.sent, self.sent_at[i] = i, time.monotonic()
                i += 1
                next_time += 1 / self.fps
                time.sleep(max(0.0, next_time - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def __enter__(self) -> "MJPEGServer":
        self.thread.start()
        return self

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.httpd.shutdown()
            self.httpd.server_close()

    def __exit__(self, *exc) -> None:
        self.close()


def x264_options(path: Path) -> str:
    """The settings x264 writes into every stream it encodes (its SEI text: 'x264 - core ... options: ...')."""
    data = Path(path).read_bytes()
    start = data.index(b"options: ")
    return data[start:data.index(b"\x00", start)].decode("ascii", "replace")
