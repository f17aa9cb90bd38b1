"""Carrying a video's audio into its translated copy: packets copied unchanged (remuxed), never re-encoded
unless the output container cannot hold the codec.

The source file is opened a second time for its audio packets, which are muxed as the video advances
(`pump(until=t)`), so the two streams stay interleaved in the output. Whether the container accepts the
codec is found by writing a header into memory first: FFmpeg's codec tables (`supported_codecs`) accept
some pairs (Opus in MOV) that the muxer then refuses. Only then is the audio re-encoded to AAC, and
`note` says so.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av


def _container_takes(format_name: str, template: av.audio.stream.AudioStream) -> bool:
    """Whether a `format_name` file can carry `template`'s packets as they are."""
    try:
        probe = av.open(io.BytesIO(), "w", format=format_name)
        try:
            probe.add_stream_from_template(template)
            probe.start_encoding()  # writes the header: the muxer checks the codec here
        finally:
            probe.close()
        return True
    except (av.FFmpegError, ValueError):
        return False


class AudioCopy:
    """The first audio stream of `source`, written into `output` as the video progresses."""

    def __init__(self, source: Path, output: av.container.OutputContainer) -> None:
        self.note: str | None = None
        self.input = av.open(str(source))
        self.in_stream = self.input.streams.audio[0] if self.input.streams.audio else None
        self.encoder = None
        self._pending: av.Packet | None = None
        if self.in_stream is None:
            self.input.close()
            self.input = None
            return
        codec = self.in_stream.codec_context.codec.canonical_name
        if _container_takes(output.format.name, self.in_stream):
            self.out_stream = output.add_stream_from_template(self.in_stream)
        else:
            rate = self.in_stream.rate or 48000
            self.out_stream = output.add_stream("aac", rate=rate, layout=self.in_stream.layout.name)
            self.encoder = av.AudioResampler(format="fltp", layout=self.in_stream.layout.name, rate=rate)
            self.note = f"audio: {output.format.name} cannot hold {codec}; re-encoded to AAC"
        self._packets = self.input.demux(self.in_stream)

    def _next(self) -> av.Packet | None:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        for packet in self._packets:
            if packet.dts is not None:  # the demuxer's final empty packet has none
                return packet
        return None

    def pump(self, until: Fraction | None) -> None:
        """Write the audio packets that start at or before `until` seconds (all of them when None)."""
        if self.in_stream is None:
            return
        while (packet := self._next()) is not None:
            start = packet.pts if packet.pts is not None else packet.dts
            if until is not None and start * packet.time_base > until:
                self._pending = packet
                return
            self._write(packet)

    def _write(self, packet: av.Packet) -> None:
        if self.encoder is None:
            packet.stream = self.out_stream  # PyAV rescales the timestamps into the output stream's time base
            self.out_stream.container.mux(packet)
            return
        for frame in packet.decode():
            for resampled in self.encoder.resample(frame):
                self.out_stream.container.mux(self.out_stream.encode(resampled))

    def finish(self, until: Fraction | None = None) -> None:
        """Write what is left (up to `until` seconds when given) and flush a re-encoder; `close` comes after the
        output container is closed."""
        if self.in_stream is None:
            return
        self.pump(until)
        if self.encoder is not None:
            for resampled in self.encoder.resample(None):
                self.out_stream.container.mux(self.out_stream.encode(resampled))
            self.out_stream.container.mux(self.out_stream.encode(None))

    def close(self) -> None:
        if self.input is not None:
            self._pending = None
            self._packets.close()  # the suspended demuxer goes before its container does (see VideoReader.close)
            self.input.close()
            self.input = None
