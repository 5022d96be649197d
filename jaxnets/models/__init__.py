"""Flax linen models with pure ``init``/``apply``: :class:`MLP`, :class:`CNN`, :class:`RNN`.

All three take ``activation`` and ``kernel_init`` as a name, a per-variant id, or a function, record per-layer
values under the ``"intermediates"`` collection, and name their parameters ``layer_00, layer_01, ...,
output`` so that sorted names run from the input side to the output.
"""

from __future__ import annotations

from jaxnets.models._common import OUTPUT, RECORD, SMALL_KERNEL, layer_name, small_kernel_dot_general
from jaxnets.models.cnn import CNN
from jaxnets.models.masked import MaskedConv, MaskedDense, MaskedLinear, masked_cell, masked_dropout
from jaxnets.models.mlp import MLP
from jaxnets.models.rnn import CELLS, RNN

KINDS = ("mlp", "cnn", "rnn")

__all__ = ["CELLS", "CNN", "KINDS", "MLP", "OUTPUT", "RECORD", "RNN", "SMALL_KERNEL", "MaskedConv", "MaskedDense",
           "MaskedLinear", "layer_name", "masked_cell", "masked_dropout", "small_kernel_dot_general"]
