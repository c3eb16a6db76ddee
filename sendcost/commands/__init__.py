"""One module per ``sendcost`` subcommand."""

from __future__ import annotations

import argparse
from typing import Any, Protocol


class Subcommands(Protocol):
    """What ``register(sub)`` is given: the object ``ArgumentParser.add_subparsers()``
    returns, named by what it does (argparse's own class for it is private)."""

    def add_parser(self, *args: Any, **kwargs: Any) -> argparse.ArgumentParser: ...
