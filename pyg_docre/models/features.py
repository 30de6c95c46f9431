r"""Node features of the HDG from encoder token states (paper section 2.1).

.. math::
    h_D = H[\mathrm{[CLS]}], \qquad h(m_j) = H[\text{opening } * \text{ of } m_j], \qquad
    h(e_i) = \log \sum_{j=1}^{N_{e_i}} \exp h(m^i_j)

:func:`node_features` lays them out in the homogeneous order of
:class:`~pyg_docre.data.GTNInputs` (``F^{(0)} [N, d]``). The same recipe applied to an
intermediate encoder layer gives :math:`\hat F^{(l)}` for SA-KD.
"""
from __future__ import annotations

from torch import Tensor
from torch_geometric.utils import scatter

from pyg_docre.data import GTNInputs, node_ptr

__all__ = ["scatter_logsumexp", "node_features"]


def scatter_logsumexp(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    r"""Row-wise :math:`\log\sum\exp` of ``src [n, d]`` grouped by ``index [n]`` -> ``[dim_size, d]``.

    Stable: the per-group maximum (detached) is subtracted before ``exp``. Empty groups give -inf
    (never used: every entity has at least one mention).
    """
    group_max = scatter(src.detach(), index, dim=0, dim_size=dim_size, reduce="max")
    shifted = (src - group_max[index]).exp()
    return scatter(shifted, index, dim=0, dim_size=dim_size, reduce="sum").log() + group_max


def node_features(hidden: Tensor, data, view: GTNInputs) -> Tensor:
    """``F [N, d]``: document = first token ([CLS]), mention = its ``*`` token, entity = logsumexp.

    Args:
        hidden: ``[T, d]`` token states of the batch (flat, in ``data['token']`` order).
        data: the (batched) HDG.
        view: its homogeneous view.
    """
    mention_x = hidden[data["mention"].token_index]
    num_entities = data["entity"].num_nodes
    entity_x = scatter_logsumexp(mention_x, data["mention"].entity, num_entities)
    document_x = hidden[node_ptr(data, "token")[:-1]]
    x = hidden.new_zeros(view.num_nodes, hidden.size(-1))
    x = x.index_copy(0, view.document_pos, document_x)
    x = x.index_copy(0, view.mention_pos, mention_x)
    return x.index_copy(0, view.entity_pos, entity_x)
