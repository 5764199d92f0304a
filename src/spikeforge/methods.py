"""The training methods shipped with spikeforge, registered with the engine: one line each.

Imported by :mod:`spikeforge.train.registry` the first time the engine, the recipe loader or
``load_run`` asks which methods exist. Order is application order: hybrid sites are replaced before
structural development attaches its masks. A new method is a new package plus one line here (or a
:func:`~spikeforge.train.registry.register_method` call in the user's own code).
"""

from .develop.extension import METHOD as DEVELOP
from .hybrid.extension import METHOD as HYBRID
from .train.registry import register_method

register_method(HYBRID)
register_method(DEVELOP)
