"""The built-in dynamic layers; importing this package registers them with ``DYNAMIC_REGISTRY``.

One module per layer family: :mod:`.conv`, :mod:`.linear`, :mod:`.norm`, :mod:`.container`,
:mod:`.module_list`.
"""

from . import container, conv, linear, module_list, norm

__all__ = ["container", "conv", "linear", "module_list", "norm"]
