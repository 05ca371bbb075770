"""Running an adapter's head on inputs, one module per task kind (serve layer).

:mod:`.dispatch` maps a manifest head type to a task kind and its :class:`~.types.Task`;
:mod:`.loading` loads a base as the task model class that head needs; :mod:`.classify`,
:mod:`.tokens`, :mod:`.qa` and :mod:`.choice` run them. Nothing here imports torch or transformers at
module level, so ``adapterhub run --help`` stays cheap.
"""
