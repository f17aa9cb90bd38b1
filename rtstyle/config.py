"""Typed configuration: dataclass fields become command-line options, with their type, default and help.

A field's help is its `metadata["help"]`; `choices` may be given too. `add_dataclass_args` maps a dataclass
onto an argparse parser (field `lambda_a` -> `--lambda-a`, bools off by default -> `--flag`, on by default ->
`--flag/--no-flag`) and `dataclass_from_args` builds the dataclass back, so the CLI and Python callers share
one definition. `Command` is one subcommand of cli.py built that way. `given_options(args)` names the fields
the user typed, whatever their value: `train --resume --ngf 64` must be compared with the saved run even
though 64 is the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import typing
from typing import Callable


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


class _GivenStoreTrue(_Given, argparse._StoreTrueAction):
    pass


def given_options(args: argparse.Namespace) -> set[str]:
    """The dataclass fields given on the command line (by `add_dataclass_args` options), default or not."""
    return set(getattr(args, GIVEN, ()))


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Every field of `cls` as an option (metadata: help, choices, metavar, required, flags for extra names,
    nargs; `positional` makes it an argument). A bool that is off by default is a plain flag (`--overwrite`);
    one that is on, undecided (None) or `negatable` gets its `--no-` form too. Defaults show in the help unless
    empty."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in skip or meta.get("cli") is False:
            continue
        help_text = meta.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kind = hints[f.name]
        if meta.get("positional"):
            parser.add_argument(f.name, nargs=meta.get("nargs"), type=_parser_of(meta, kind),
                                metavar=meta.get("metavar"), help=help_text)
            continue
        names = [option_name(f.name), *meta.get("flags", ())]
        if _base_type(kind) is bool:
            plain = default is False and not meta.get("negatable")
            action = _GivenStoreTrue if plain else _GivenBool
            parser.add_argument(*names, dest=f.name, action=action, default=default, help=help_text)
            continue
        shown = f" [{default}]" if default not in (None, "", [], ()) and not meta.get("required") else ""
        extra = {"const": meta["const"]} if "const" in meta else {}
        parser.add_argument(*names, dest=f.name, action=_GivenStore, type=_parser_of(meta, kind), default=default,
                            choices=meta.get("choices"), metavar=meta.get("metavar"), nargs=meta.get("nargs"),
                            required=meta.get("required", False), help=f"{help_text}{shown}", **extra)


def _parser_of(meta, kind):
    """The value parser: metadata["type"] if given (its UserError message becomes argparse's), else the type."""
    parse = meta.get("type")
    if parse is None:
        return _base_type(kind)

    def checked(text: str):
        try:
            return parse(text)
        except ValueError as e:  # rtstyle.errors.UserError is a ValueError: keep its message
            raise argparse.ArgumentTypeError(str(e)) from None

    checked.__name__ = getattr(parse, "__name__", "value")
    return checked


def _base_type(kind) -> type:
    """The type each value is parsed with: X for `X | None`, `list[X]` and `list[X] | None`."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    kind = args[0] if args else kind
    return typing.get_args(kind)[0] if typing.get_origin(kind) is list else kind


def option_values(cls: type, args: argparse.Namespace) -> dict:
    """The values of `cls`'s fields that `args` holds, by name (how train and distill pass their options on)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides):
    return cls(**(option_values(cls, args) | overrides))


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, the function that runs it (args -> exit code), the option dataclass it
    maps onto (the first paragraph of its docstring is the description), --model (True: required; a str: its
    default; "": optional), the backend options of commands that run a model, and arguments of its own."""

    help: str
    run: Callable[[argparse.Namespace], int]
    options: type | tuple[type, ...] | None = None  # several: the first one's docstring describes it
    model: bool | str = False
    backend: bool = False
    extra: Callable[[argparse.ArgumentParser], None] | None = None
    description: str | None = None
    actions: dict[str, Command] | None = None  # `datasets make-demo|download`: commands of its own

    def add_to(self, sub, name: str) -> argparse.ArgumentParser:
        """Add this command to the subparsers `sub` as `name`; its parser runs `self.run` (args.handler)."""
        from .backends import BackendOptions
        from .store import MODEL_HELP

        groups = self.options if isinstance(self.options, tuple) else (self.options,) if self.options else ()
        doc = inspect.cleandoc(groups[0].__doc__ or "").split("\n\n")[0] if groups else self.description
        p = sub.add_parser(name, help=self.help, description=doc)
        p.add_argument("--verbose", action="store_true",
                       help="also show what the libraries underneath print (OpenCV, FFmpeg, torch, NNCF)")
        if self.model is not False:
            default = self.model if isinstance(self.model, str) else None
            p.add_argument("--model", required=default is None, default=default or None,
                           help=MODEL_HELP + (f" [{default}]" if default else ""))
        for group in groups:
            add_dataclass_args(p, group)
        if self.backend:
            add_dataclass_args(p, BackendOptions)
            p.add_argument("--fast", action="store_true",
                           help="run the model's distilled student from the store instead (`distill` makes one)")
        if self.extra:
            self.extra(p)
        if self.actions:
            sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
            for action, command in self.actions.items():
                command.add_to(sub, action)
        p.set_defaults(handler=self.run)
        return p
