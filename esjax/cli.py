"""The ``esjax`` command: ``esjax train|evaluate|export|seeds|plot ...`` runs the module of
that name with the same options (``python -m esjax.train ...`` keeps working);
``esjax --version`` prints the version and the commit it was installed from."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train a policy (python -m esjax.train)",
    "evaluate": "run a checkpoint's policy, optionally to a video (python -m esjax.evaluate)",
    "export": "write a policy as .npz or ONNX (python -m esjax.export)",
    "seeds": "train one config with several seeds and summarize (python -m esjax.seeds)",
    "plot": "draw runs' learning curves (python -m esjax.plot)",
}


def version_line() -> str:
    from esjax import __version__
    from esjax.provenance import git_commit

    return f"esjax {__version__} (commit {git_commit()})"


def usage() -> str:
    lines = ["usage: esjax COMMAND [options]   (esjax COMMAND --help for its options)", ""]
    lines += [f"  {name:<9} {what}" for name, what in COMMANDS.items()]
    lines += ["", "  --version  the version and the commit"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(version_line())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"esjax: error: unknown command {name!r}: choose one of "
              f"{', '.join(COMMANDS)} (see esjax --help)", file=sys.stderr)  # fmt: skip
        return 2
    from esjax.parsing import OneLineParser

    OneLineParser.invoked_as = f"esjax {name}"
    try:
        return importlib.import_module(f"esjax.{name}").main(rest)
    finally:
        OneLineParser.invoked_as = None


if __name__ == "__main__":
    sys.exit(main())
