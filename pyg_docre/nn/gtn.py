"""The Graph-Transformer Network: a stack of :class:`~pyg_docre.nn.GTNConv` layers."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor
from torch_geometric import is_compiling
from torch_geometric.typing import OptTensor

from .attention import BatchSizes
from .conv import GTNConv
from .conv.gtn_checks import check_gtn_arguments, check_gtn_inputs
from .conv.gtn_structure import GTNStructure, resolve_gtn_structure

__all__ = ["GTN"]


class GTN(torch.nn.Module):
    r"""The Graph-Transformer Network of DocRE-BSI: :math:`L` stacked
    :class:`~pyg_docre.nn.GTNConv` layers,

    .. math::
        \mathbf{F}^{(l+1)} = \mathrm{GTNConv}_l\left(\mathbf{F}^{(l)}, \mathcal{G},
        \mathbf{H}\right), \qquad l = 0, \dots, L - 1,

    all sharing the graph structure :math:`\mathcal{G}` and (by default) the same token states
    :math:`\mathbf{H}`.

    Args:
        channels (int): Node feature size :math:`C`.
        num_layers (int, optional): :math:`L`. (default: :obj:`2`, the paper's choice)
        token_channels (int, optional): Token state size; :obj:`None` = :obj:`channels`.
        **conv_kwargs (optional): Passed to every :class:`~pyg_docre.nn.GTNConv` (heads,
            ablation switches, dropout, :obj:`attention`, ...).
    """

    def __init__(self, channels: int, num_layers: int = 2, token_channels: Optional[int] = None,
                 **conv_kwargs):
        super().__init__()
        check_gtn_arguments(num_layers=num_layers)
        self.channels = channels
        self.num_layers = num_layers
        self.token_channels = channels if token_channels is None else token_channels
        self.convs = torch.nn.ModuleList([
            GTNConv(channels, token_channels=token_channels, **conv_kwargs)
            for _ in range(num_layers)])

    @property
    def attention(self) -> str:
        """``"sparse"`` or ``"dense"``: the computation of every layer (set all at once)."""
        modes = {conv.attention for conv in self.convs}
        if len(modes) != 1:
            raise ValueError(f"the layers use different attention modes: {sorted(modes)}")
        return modes.pop()

    @attention.setter
    def attention(self, value: str) -> None:
        for conv in self.convs:
            conv.attention = value

    def reset_parameters(self):
        for conv in self.convs:
            conv.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: OptTensor = None,
        edge_type: OptTensor = None,
        batch: OptTensor = None,
        node_entity: OptTensor = None,
        sentence_index: OptTensor = None,
        token_x: Union[Tensor, Sequence[Tensor], None] = None,
        token_batch: OptTensor = None,
        token_edge_index: OptTensor = None,
        return_all_layers: bool = False,
        check_inputs: Optional[bool] = None,
        sizes: Optional[BatchSizes] = None,
        structure: Optional[GTNStructure] = None,
    ) -> Union[Tensor, List[Tensor]]:
        r"""Runs the :math:`L` layers.

        Args:
            x: ``[N, C]`` node features :math:`\mathbf{F}^{(0)}`.
            edge_index, edge_type, batch, node_entity, sentence_index, token_batch,
                token_edge_index: as in :meth:`GTNConv.forward`.
            token_x: ``[T, C_tok]`` token states used by every layer, or a sequence of
                :obj:`num_layers` such tensors (layer :math:`l` attends to ``token_x[l]``, as
                in the authors' code, which feeds different encoder layers to different GTN
                layers), or :obj:`None` without cross attention.
            return_all_layers: return ``[F^(1), ..., F^(L)]`` instead of :math:`\mathbf{F}^{(L)}`.
            check_inputs: check the structure arguments once, before the first layer (see
                :meth:`GTNConv.forward`; the layers then skip their own checks). ``None``: check
                except under ``torch.compile``.
            sizes: the batch's :class:`~pyg_docre.nn.attention.BatchSizes` when the caller
                already knows them on the host; by default they are read back from ``batch``
                and ``token_batch`` (two reads). Checked against the inputs with
                ``check_inputs``.
            structure: the batch's :class:`~pyg_docre.nn.conv.gtn_structure.GTNStructure`
                (:meth:`structure`), for a caller that runs the stack several times on one
                batch; by default built here once for all layers (from ``sizes`` when given).
                Not together with ``sizes`` (it holds them). Checked with ``check_inputs``.

        Returns:
            ``[N, C]`` :math:`\mathbf{F}^{(L)}`, or the list of all :math:`L` layer outputs.
        """
        if token_x is None or isinstance(token_x, Tensor):
            token_xs = [token_x] * self.num_layers
        else:
            token_xs = list(token_x)
            if len(token_xs) != self.num_layers:
                raise ValueError(f"token_x holds {len(token_xs)} tensors but the GTN has "
                                 f"{self.num_layers} layers")
        if check_inputs is None:
            check_inputs = not is_compiling()
        if check_inputs:
            checked: set[int] = set()
            for tx in token_xs:                     # each distinct token tensor once
                if id(tx) not in checked:
                    checked.add(id(tx))
                    check_gtn_inputs(self.convs[0], x, edge_index, edge_type, batch,
                                     node_entity, sentence_index, tx, token_batch,
                                     token_edge_index)
        # Derive the structure tensors (and read the batch's sizes back) once for all layers
        # (every layer's tokens have the same documents), not once per layer or attention call.
        num_tokens = 0 if token_xs[0] is None else token_xs[0].size(0)
        structure = resolve_gtn_structure(self.structure, structure, check_inputs, edge_index,
                                          edge_type, batch, node_entity, sentence_index,
                                          token_batch, x.size(0), num_tokens, sizes)
        outs = []
        for conv, tx in zip(self.convs, token_xs):
            x = conv(x, edge_index, edge_type, batch, node_entity, sentence_index, tx,
                     token_batch, token_edge_index, check_inputs=False, structure=structure)
            outs.append(x)
        return outs if return_all_layers else x

    def structure(self, edge_index: OptTensor = None, edge_type: OptTensor = None,
                  batch: OptTensor = None, node_entity: OptTensor = None,
                  sentence_index: OptTensor = None, token_batch: OptTensor = None,
                  num_nodes: int = 0, num_tokens: int = 0,
                  sizes: Optional[BatchSizes] = None) -> GTNStructure:
        """The structure tensors of a batch, shared by every layer (:meth:`GTNConv.structure`);
        pass it as ``structure=`` to run the stack several times on one batch."""
        return self.convs[0].structure(edge_index, edge_type, batch, node_entity,
                                       sentence_index, token_batch, num_nodes, num_tokens, sizes)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, num_layers={self.num_layers}, "
                f"conv={self.convs[0]!r})")
