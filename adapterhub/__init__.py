"""adapterhub: the package manager for parameter-efficient fine-tuning.

Importing ``adapterhub`` is cheap (no torch, no transformers): the CLI and the registry need neither.
The runtime (``adapterhub.runtime``) imports torch when it is first used.
"""

from ._version import __version__

__all__ = ["__version__"]
