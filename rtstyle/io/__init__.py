"""Frames in and out: everything that touches files, cameras, streams and windows, and nothing that infers.

`images` reads and writes still images, `video` decodes and encodes video files with PyAV (the one video
decoder every reader uses; `tracks` copies the audio and subtitle tracks), `sources` opens cameras,
streams, files and image folders as live sources, `display` is the OpenCV window, `inputs` expands the
files, folders and globs a command is given, and `files` is how every output is written (`atomic_write`,
whose final step `publish` never replaces a file that appeared meanwhile). This package never imports
`rtstyle.backends` or `rtstyle.formats` (a test checks it), so frames can be read without any runtime.
"""
