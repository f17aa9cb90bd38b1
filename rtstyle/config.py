"""Typed configuration: dataclass fields become command-line options, with their type, default and help.

A field's help is its `metadata["help"]`; `choices` may be given too. `add_dataclass_args` maps a dataclass
onto an argparse parser (field `lambda_a` -> `--lambda-a`, bools -> `--flag/--no-flag`) and
`dataclass_from_args` builds the dataclass back, so the CLI and Python callers share one definition.
`given_options(args)` names the fields the user typed, whatever their value: `train --resume --ngf 64`
must be compared with the saved run even though 64 is the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing


GIVEN = "_given_options"  # the namespace attribute the actions below record into


class _Given(argparse.Action):
    """Mixin: record the destination in `namespace._given_options` when the option is on the command line.

    argparse keeps no such record (a value equal to the default looks untyped); subparsers copy every
    attribute of their namespace into the parent's, this set included."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = set(getattr(namespace, GIVEN, ()))
        setattr(namespace, GIVEN, given | {self.dest})
        super().__call__(parser, namespace, values, option_string)


class _GivenStore(_Given, argparse._StoreAction):
    pass


class _GivenBool(_Given, argparse.BooleanOptionalAction):
    pass


def given_options(args: argparse.Namespace) -> set[str]:
    """The dataclass fields given on the command line (by `add_dataclass_args` options), default or not."""
    return set(getattr(args, GIVEN, ()))


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
            parser.add_argument(option_name(f.name), action=_GivenBool, default=default, help=f"{help_text}")
            continue
        base = _base_type(kind)
        parser.add_argument(option_name(f.name), action=_GivenStore, type=base, default=default,
                            choices=f.metadata.get("choices"),
                            metavar=f.metadata.get("metavar"), help=f"{help_text} [{default}]")


def _base_type(kind) -> type:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)
