"""One handler per kind of graph node.

A handler returns the value of the node when it understands it, or None to let the next handler
try. The order matters: a layer call is recognised before a generic module call, and anything no
handler understands is a boundary (:mod:`.boundary`).
"""

from . import axes, boundary, concat, created, elementwise, flatten, layer, matmul, passthrough, reshape, shape

HANDLERS = (
    layer.handle,
    created.handle,
    axes.handle,
    passthrough.handle,
    flatten.handle,
    reshape.handle,
    matmul.handle,
    shape.handle,
    elementwise.handle,
    concat.handle,
)

__all__ = ["HANDLERS", "boundary"]
