"""What the data modules share: CIFAR-10's class names, a short form of an exception, the console line (from
gan/console.py, which imports nothing of gan: data stays below the run's records)."""
from __future__ import annotations

from gan.console import console

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def why(e: BaseException) -> str:
    """An exception as a short single line for a GanError."""
    name = type(e).__name__
    name = f"{type(e).__module__}.error" if name == "error" else name  # struct.error, zlib.error
    text = str(e).strip().splitlines()
    return f"{name}: {text[0][:160]}" if text else name


def console_print(msg: str) -> None:
    console.print(msg, markup=False)
