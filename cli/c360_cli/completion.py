"""`c360 completion bash|zsh`: a shell completion script for every command and option."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description=(
            "Print a completion script for every c360 command and option. Load it with"
            ' `eval "$(c360 completion bash)"` (in ~/.bashrc), or for zsh write it to a file'
            " named _c360 in a folder of $fpath."
        ),
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from c360_cli.main import build_parser

    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0
