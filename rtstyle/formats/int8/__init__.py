"""The int8 format: an OpenVINO IR whose convolutions NNCF quantised, accuracy-checked against fp32.

`quantize` builds and caches it (and is the child process `python -m rtstyle.formats.int8.quantize` the
int8 backend starts for background builds), `rewrites` holds the exact sub-pixel rewrite of the transposed
convolutions that lets every convolution run in int8, and `calibration` the real frames it is calibrated
and checked on (decoded by `rtstyle.io`, the one video decoder).
"""
