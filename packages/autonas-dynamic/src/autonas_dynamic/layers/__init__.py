"""The built-in dynamic layers; importing this package registers them with ``DYNAMIC_REGISTRY``.

One module per layer family: :mod:`.conv`, :mod:`.linear`, :mod:`.norm`, :mod:`.container`,
:mod:`.module_list`, :mod:`.embedding`, :mod:`.multihead` (with :mod:`.multihead_ops` and
:mod:`.multihead_export`).
"""

from . import container, conv, embedding, linear, module_list, multihead, norm

__all__ = ["container", "conv", "embedding", "linear", "module_list", "multihead", "norm"]
