"""Download progress: one byte bar per pulled adapter, on stderr, only when someone is watching.

The bar itself is the package-wide :class:`adapterhub.progress.Progress` (``run --file`` and the index
importer use the same one, with other units).
"""

from __future__ import annotations

from ..progress import Progress

__all__ = ["Progress"]
