"""The demo behind ``autonas demo``: a residual 1-D CNN supernet on MNIST-1D signals.

Everything the demo needs lives here: the data (:mod:`.data`), the model and its search rules
(:mod:`.model`), the training loops (:mod:`.training`), the report table (:mod:`.report`), the
candidate plot (:mod:`.plot`) and the workflow itself (:mod:`.run`).
"""
