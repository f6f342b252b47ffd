"""The ``droplab`` command line: a table of subcommands, each owned by one module.

Each module named in ``COMMANDS`` defines ``add_arguments(parser)`` and ``run(args) -> int``;
it keeps heavy imports (torch, numba, matplotlib) inside ``run`` so that ``droplab --help``
answers at once. Exit status: 0 success, 2 bad arguments, 1 other failures, 130 interrupted;
errors are one line, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

# name -> (module that owns it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "droplab.cli.demo",
        "what dropout does: one network with and without it, a report",
    ),
    "train": ("droplab.cli.train", "train the MLP on Fashion-MNIST (torch or NumPy)"),
    "sweep": ("droplab.cli.sweep", "sweep dropout rates (and more) on cores or Ray"),
    "mc": ("droplab.cli.mc", "Monte-Carlo dropout: uncertainty, calibration, UCI"),
    "bench": ("droplab.cli.bench", "benchmark droplab's dropout kernels against PyTorch"),
    "report": ("droplab.cli.report", "(re)build the HTML report of a run or sweep folder"),
    "tour": ("droplab.cli.tour", "run every tutorial example, checked against PyTorch"),
}

EPILOG = """examples:
  droplab demo                      # about a minute: the same network with and without dropout, a report
  droplab train --dropout 0.2,0.5 --epochs 5 --out runs/a
  droplab sweep --grid dropout=0,0.25,0.5,0.75 --grid subset=1000 --seeds 3 --out runs/s
  droplab tour                      # every tutorial example, PASS/FAIL against PyTorch
Run `droplab COMMAND --help` for the options of each command."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _top_parser() -> _Parser:
    parser = _Parser(
        prog="droplab",
        description="droplab: dropout regularization, from the formula to experiments.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from droplab._version import __version__

    parser.add_argument("--version", action="version", version=f"droplab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (_, helptext) in COMMANDS.items():
        sub.add_parser(name, help=helptext, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    if not argv or argv[0] not in COMMANDS:
        top = _top_parser()
        if argv and not argv[0].startswith("-"):
            top.error(f"unknown command {argv[0]!r} (choose from {', '.join(COMMANDS)})")
        top.parse_args(argv)  # --help / --version exit here
        top.print_help()
        return 2
    name = argv[0]
    module_name, helptext = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = _Parser(
        prog=f"droplab {name}",
        description=(module.__doc__ or helptext).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    from droplab.provenance import record_command

    record_command(["droplab", *argv])  # what every result file and report says was run
    _one_line_warnings()
    previous = signal.signal(signal.SIGTERM, _terminated) if _main_thread() else None
    try:
        return _run(name, module, args, debug)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(name: str, module, args: argparse.Namespace, debug: bool) -> int:
    """The command's ``run(args)``; an error becomes one line on stderr and an exit status
    (``--debug``: the traceback instead)."""
    from droplab.errors import DroplabError, UsageError

    try:
        return int(module.run(args) or 0)
    except Terminated:
        print(f"droplab {name}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"droplab {name}: interrupted", file=sys.stderr)
        return 130
    except UsageError as e:
        if debug:
            raise
        print(f"droplab {name}: error: {e}", file=sys.stderr)
        return 2
    except (DroplabError, OSError, ValueError, TypeError, RuntimeError) as e:
        if debug:
            raise
        print(f"droplab {name}: error: {e}", file=sys.stderr)
        return 1
    except MemoryError as e:
        if debug:
            raise
        detail = " ".join(str(e).split())[-160:]
        print(
            f"droplab {name}: error: out of memory ({detail or 'no detail'}); try smaller sizes",
            file=sys.stderr,
        )
        return 1
    except Exception as e:  # a bug: still one line, the traceback one flag away
        if debug:
            raise
        print(
            f"droplab {name}: internal error: {type(e).__name__}: {e} "
            "(run with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C: every command's Ctrl-C path (save, clean up) runs too."""


def _terminated(signum, frame):
    raise Terminated


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _one_line_warnings() -> None:
    """Warnings as one line (``droplab: warning: ...``), not the file:line and source pair."""
    import warnings

    warnings.formatwarning = lambda message, category, *a, **k: f"droplab: warning: {message}\n"


if __name__ == "__main__":
    sys.exit(main())
