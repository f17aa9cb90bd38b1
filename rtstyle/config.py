"""Typed configuration: dataclass fields become command-line options, with their type, default and help.

A field's help is its `metadata["help"]`; `choices` may be given too. `add_dataclass_args` maps a dataclass
onto an argparse parser (field `lambda_a` -> `--lambda-a`, bools -> `--flag/--no-flag`) and
`dataclass_from_args` builds the dataclass back, so the CLI and Python callers share one definition.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kind = hints[f.name]
        if kind is bool:
            parser.add_argument(option_name(f.name), action=argparse.BooleanOptionalAction, default=default,
                                help=f"{help_text}")
            continue
        base = _base_type(kind)
        parser.add_argument(option_name(f.name), type=base, default=default, choices=f.metadata.get("choices"),
                            metavar=f.metadata.get("metavar"), help=f"{help_text} [{default}]")


def _base_type(kind) -> type:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)
