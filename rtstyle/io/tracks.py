"""Carrying a video's audio and subtitle tracks into its translated copy: every one the output container can
hold, packets copied unchanged (remuxed) with their language, title and disposition (issue 15, item 4).

The source file is opened a second time for these packets, which are muxed as the video advances
(`pump(until=t)`), so the streams stay interleaved in the output. Whether the container accepts a codec is
found by writing a header into memory first: FFmpeg's codec tables (`supported_codecs`) accept some pairs
(Opus in MOV) that the muxer then refuses. Audio it refuses is re-encoded, to Opus for WebM (which holds only
Opus and Vorbis) and to AAC elsewhere; a subtitle track it refuses (SubRip in MP4) is dropped. Either way a
note says which track and why. Data and attachment streams (timecodes, fonts) are not carried.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

# stream tags the muxer writes itself (and that would be wrong for a cut copy), and the legacy "rotate" (the
# writer sets the display matrix): not copied from the input
_MUXER_TAGS = ("DURATION", "NUMBER_OF_", "_STATISTICS", "ENCODER", "encoder", "BPS", "rotate")


def _container_takes(format_name: str, template: av.stream.Stream) -> bool:
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


def _describe(stream: av.stream.Stream) -> str:
    """'audio stream 2 (aac, fra)': the input's stream index, codec and language."""
    language = stream.metadata.get("language")
    return f"{stream.type} stream {stream.index} ({stream.codec_context.name}{', ' + language if language else ''})"


def _copy_tags(src: av.stream.Stream, dst: av.stream.Stream) -> None:
    for key, value in src.metadata.items():
        if not key.startswith(_MUXER_TAGS):
            dst.metadata[key] = value
    try:
        dst.disposition = src.disposition  # default / forced / hearing impaired flags
    except (AttributeError, TypeError, ValueError):  # a PyAV that cannot set it
        pass


@dataclass
class _Track:
    source: av.stream.Stream
    output: av.stream.Stream
    reencode: bool


class TrackCopy:
    """The audio and subtitle tracks of `source`, written into `output` as the video progresses; `notes` say
    what was re-encoded or dropped. `video`, the output's video stream, gets the tags of the source's."""

    def __init__(self, source: Path, output: av.container.OutputContainer,
                 video: av.stream.Stream | None = None) -> None:
        self.notes: list[str] = []
        self.input = av.open(str(source))
        if video is not None and self.input.streams.video:
            _copy_tags(self.input.streams.video[0], video)
        self.tracks: dict[int, _Track] = {}
        self._pending: av.Packet | None = None
        fmt = output.format.name
        for stream in self.input.streams:
            if stream.type not in ("audio", "subtitle"):
                continue
            if _container_takes(fmt, stream):
                track = _Track(stream, output.add_stream_from_template(stream), reencode=False)
            elif stream.type == "audio":
                track = _Track(stream, self._audio_encoder(output, stream), reencode=True)
            else:
                self.notes.append(f"{_describe(stream)} dropped: {fmt} cannot hold {stream.codec_context.name} "
                                  "subtitles (an .mkv output keeps them)")
                continue
            _copy_tags(stream, track.output)
            self.tracks[stream.index] = track
        if not self.tracks:
            self.input.close()
            self.input = None
            return
        self._packets = self.input.demux([t.source for t in self.tracks.values()])  # interleaved by time

    def _audio_encoder(self, output: av.container.OutputContainer, stream: av.audio.stream.AudioStream):
        webm = output.format.name == "webm"
        codec = "libopus" if webm and "libopus" in av.codecs_available else "opus" if webm else "aac"
        rate = 48000 if webm else (stream.rate or 48000)  # Opus runs at 48 kHz (8/12/16/24 too, never 44.1)
        out = output.add_stream(codec, rate=rate, layout=stream.layout.name)
        name = "Opus" if webm else "AAC"
        self.notes.append(f"{_describe(stream)}: {output.format.name} cannot hold {stream.codec_context.name}; "
                          f"re-encoded to {name}")
        return out

    def _next(self) -> av.Packet | None:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        for packet in self._packets:
            if packet.dts is not None:  # the demuxer's final empty packets have none
                return packet
        return None

    def pump(self, until: Fraction | None) -> None:
        """Write the packets that start at or before `until` seconds (all of them when None)."""
        if self.input is None:
            return
        while (packet := self._next()) is not None:
            start = packet.pts if packet.pts is not None else packet.dts
            if until is not None and start * packet.time_base > until:
                self._pending = packet
                return
            self._write(packet)

    def _write(self, packet: av.Packet) -> None:
        track = self.tracks[packet.stream.index]
        out = track.output
        if not track.reencode:
            packet.stream = out  # PyAV rescales the timestamps into the output stream's time base
            out.container.mux(packet)
            return
        for frame in packet.decode():  # the encoder converts format, rate and frame size itself
            out.container.mux(out.encode(frame))

    def finish(self, until: Fraction | None = None) -> None:
        """Write what is left (up to `until` seconds when given) and flush re-encoders; `close` comes after the
        output container is closed."""
        if self.input is None:
            return
        self.pump(until)
        for track in self.tracks.values():
            if track.reencode:
                track.output.container.mux(track.output.encode(None))

    def close(self) -> None:
        if self.input is not None:
            self._pending = None
            self._packets.close()  # the suspended demuxer goes before its container does (see VideoReader.close)
            self.input.close()
            self.input = None
