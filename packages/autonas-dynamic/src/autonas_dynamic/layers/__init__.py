"""The built-in dynamic layers; importing this package registers them with ``DYNAMIC_REGISTRY``.

One module per layer family: :mod:`.conv`, :mod:`.linear`, :mod:`.norm`, :mod:`.container`,
:mod:`.module_list`, :mod:`.embedding`.
"""

from . import container, conv, embedding, linear, module_list, norm

__all__ = ["container", "conv", "embedding", "linear", "module_list", "norm"]
