"""imgcls: offline, CPU-first ImageNet image classification (CLI, HTTP service, web UI).

The public Python API is ``Classifier``; everything else is reachable through the CLI.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Classifier", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import imgcls` stays cheap for the CLI's --help and for the server's workers.
    if name == "Classifier":
        from imgcls.engine import Classifier

        return Classifier
    raise AttributeError(name)
