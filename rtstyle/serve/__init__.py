"""Serving live translations over HTTP (aiohttp): an MJPEG stream of the live loop (`webcam --serve`) and the
browser page (`serve`) whose camera frames come in over a WebSocket and go back translated.

`security` parses the address, decides the token and checks every request; `server` runs an aiohttp app in a
thread of its own and fans the newest JPEG out to MJPEG clients; `mjpeg` is the live loop's sink; `queue` is
the one-model translation queue the browsers share; `browser` is the `serve` command's app; `static/` holds
the page (plain HTML and JS, no build step).
"""
