"""The Graph-Transformer Network layer of DocRE-BSI (Zhang et al., IJCAI 2023, section 2.2)."""
from __future__ import annotations

import bisect
import inspect
import math
from typing import Optional, Tuple, Union, overload

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Embedding, GELU, LayerNorm, Sequential
from torch.utils.checkpoint import checkpoint
from torch_geometric import is_compiling
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import OptTensor
from torch_geometric.utils import scatter, softmax

from .gtn_checks import check_gtn_arguments, check_gtn_inputs, check_message_passing_kwargs
from .gtn_dense import dense_cross_attention, dense_local_heads, dense_self_attention
from .gtn_structure import GTNStructure, gtn_structure, resolve_gtn_structure
from ..attention import BatchSizes, layout_attention

__all__ = ["GTNConv"]

class GTNConv(MessagePassing):
    r"""The Graph-Transformer Network (GTN) layer from the `"Exploring Effective Inter-Encoder
    Semantic Interaction for Document-Level Relation Extraction"
    <https://www.ijcai.org/proceedings/2023/0575.pdf>`_ paper (DocRE-BSI, IJCAI 2023).

    One layer is three post-LN sublayers (like BERT), each
    :math:`\mathbf{X} \leftarrow \mathrm{LayerNorm}(\mathbf{X} + \mathrm{Dropout}(
    \mathrm{Sublayer}(\mathbf{X})))`:

    **1. Graph attention** (eq. 1-2). With :math:`K` = :obj:`num_edge_types` edge types and
    head size :math:`d = C / (K + 1)`, head :math:`k < K` attends over the incoming edges of
    type :math:`k` plus a self loop (added by the layer, never stored):

    .. math::
        \mathbf{h}_{i,k} = \sum_{j \in \mathcal{N}_k(i) \cup \{i\}} \alpha_{ij}^{k}\,
        \mathbf{W}_k^V \mathbf{x}_j, \qquad
        \alpha_{ij}^{k} = \operatorname{softmax}_{j \in \mathcal{N}_k(i) \cup \{i\}}\left(
        \frac{(\mathbf{W}_k^Q \mathbf{x}_i)^\top (\mathbf{W}_k^K \mathbf{x}_j)}{\sqrt{d}}\right).

    The global head :math:`K` attends over all nodes of the same document, with queries and keys
    from structure-aware features :math:`\tilde{\mathbf{x}}` and values from :math:`\mathbf{x}`:

    .. math::
        \mathbf{h}_{i,K} = \sum_{j:\, b(j) = b(i)} \operatorname{softmax}_j\left(
        \frac{(\mathbf{W}_K^Q \tilde{\mathbf{x}}_i)^\top (\mathbf{W}_K^K \tilde{\mathbf{x}}_j)}
        {\sqrt{d}}\right) \mathbf{W}_K^V \mathbf{x}_j, \qquad
        \tilde{\mathbf{x}}_i = \mathbf{x}_i + \mathrm{emb}_e(e_i) +
        \frac{1}{|S_i|} \sum_{s \in S_i} \mathrm{emb}_s(s),

    where :math:`e_i` is the node's entity (:obj:`node_entity`) and :math:`S_i` the multiset of
    its sentences (:obj:`sentence_index`: one per mention; an entity has one per mention of it).
    The heads are concatenated and projected, :math:`\mathbf{W}^O [\mathbf{h}_{i,0} \Vert \dots
    \Vert \mathbf{h}_{i,K}]`.

    **2. Cross attention** from graph nodes to the encoder's token states :math:`\mathbf{t}`,
    :math:`H_c` = :obj:`cross_heads` heads of size :math:`C / H_c`: the first half global (all
    tokens of the node's document), the second half local (only tokens :math:`j` with an edge
    :math:`(j, i)` in :obj:`token_edge_index`, i.e. tokens of the node's sentences):

    .. math::
        \mathbf{c}_{i,h} = \sum_{j \in \mathcal{T}_h(i)} \operatorname{softmax}_{j \in
        \mathcal{T}_h(i)}\left(\frac{(\mathbf{U}_h^Q \mathbf{x}_i)^\top (\mathbf{U}_h^K
        \mathbf{t}_j)}{\sqrt{C / H_c}}\right) \mathbf{U}_h^V \mathbf{t}_j,

    followed by an output projection. A node without local tokens gets a zero local message.

    **3. Feed-forward**: :math:`\mathbf{W}_2\, \mathrm{GELU}(\mathbf{W}_1 \mathbf{x} + b_1) + b_2`,
    :math:`C \to` :obj:`ffn_channels` :math:`\to C`.

    **Two computations, one set of parameters** (:attr:`attention`, switchable at any time):

    * :obj:`"sparse"`: the local graph heads and the local cross heads by message passing over
      the edge lists (one message per edge and head, :func:`torch_geometric.utils.softmax`
      grouped by destination and head); the global heads dense per document with
      :func:`~torch.nn.functional.scaled_dot_product_attention` (no mask for a single
      document, a key-padding mask otherwise). Memory is linear in nodes, edges and tokens;
      the local cross heads, which carry most edges (every token of a node's sentences), run
      over chunks of at most :obj:`cross_chunk_edges` edges grouped by destination node, so
      their per-edge query/key/value copies never exceed one chunk (with gradients, each chunk
      is recomputed in backward by :func:`torch.utils.checkpoint.checkpoint`).
    * :obj:`"dense"`: the same layer with masked :math:`N \times N` and :math:`N \times T`
      score matrices per document, as in the authors' implementation (the reference to compare
      against and benchmark).

    Structure embeddings: :obj:`emb_entity` has :obj:`num_entity_embeddings` + 1 rows and
    :obj:`emb_sentence` :obj:`num_sentence_embeddings` + 1 rows; the last row of each is reserved
    (the entity row of nodes with :obj:`node_entity` = -1, such as the document node; the sentence
    row of nodes without any :obj:`sentence_index` pair, such as the document node). Indices
    beyond a table **wrap around**: entity :math:`e` uses row :math:`e \bmod`
    :obj:`num_entity_embeddings`, sentence :math:`s` row :math:`s \bmod`
    :obj:`num_sentence_embeddings`, so documents of any size work.

    Args:
        channels (int): Size :math:`C` of node features (input and output).
        token_channels (int, optional): Size of the token states; :obj:`None` = :obj:`channels`.
        num_edge_types (int, optional): Number :math:`K` of edge types, one local head each.
            :obj:`channels` must be divisible by :math:`K + 1`. (default: :obj:`3`:
            intra-entity, intra-sentence, document)
        cross_heads (int, optional): Heads :math:`H_c` of the cross attention; :obj:`channels`
            must be divisible by it, and it must be even when both local and global cross heads
            are on. (default: :obj:`4`)
        num_entity_embeddings (int, optional): Entity rows of :math:`\mathrm{emb}_e` (plus one
            reserved row). (default: :obj:`64`)
        num_sentence_embeddings (int, optional): Sentence rows of :math:`\mathrm{emb}_s` (plus
            one reserved row). (default: :obj:`64`)
        ffn_channels (int, optional): Hidden size of the feed-forward sublayer.
            (default: :obj:`2 * channels`, as in the authors' code)
        dropout (float, optional): Dropout on every sublayer output. (default: :obj:`0.`)
        attention_dropout (float, optional): Dropout on attention weights. Note that PyTorch's
            fused CPU attention kernels do not support dropout: when training with
            :obj:`attention_dropout > 0` the global heads fall back to PyTorch's math kernel
            (quadratic memory per document). (default: :obj:`0.`)
        attention (str, optional): :obj:`"sparse"` or :obj:`"dense"`. (default: :obj:`"sparse"`)
        global_head (bool, optional): Ablation "w/o the fourth head": if :obj:`False`, only the
            :math:`K` edge-type heads (same head size :math:`C / (K + 1)`; the output projection
            maps :math:`K d \to C`) and no structure embeddings. (default: :obj:`True`)
        graph_attention (str, optional): :obj:`"graph"` (eq. 1-2) or :obj:`"self"` (ablation
            "graph-attention -> self-attention": the same number of heads, all plain multi-head
            self-attention over the nodes of the document, no edge masks, no structure
            embeddings). (default: :obj:`"graph"`)
        cross_attention (bool, optional): Ablation "w/o cross-attention": if :obj:`False`, no
            cross-attention sublayer (token inputs are ignored). (default: :obj:`True`)
        cross_local (bool, optional): Ablation "w/o local head in cross-attention": if
            :obj:`False`, all cross heads are global. (default: :obj:`True`)
        cross_global (bool, optional): Ablation "w/o global head in cross-attention": if
            :obj:`False`, all cross heads are local. (default: :obj:`True`)
        bias (bool, optional): Biases in the linear projections. (default: :obj:`True`)
        layer_norm_eps (float, optional): Epsilon of the three LayerNorms. (default: :obj:`1e-5`)
        cross_chunk_edges (int, optional): Largest number of token edges the sparse local cross
            heads process at once; more are split into chunks of whole destination nodes (a
            node with more edges than this forms a chunk of its own). Real documents (a few
            thousand token edges) are never split; :obj:`None` never splits.
            (default: :obj:`2 ** 19`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features :math:`(N, C)`, edge indices :math:`(2, E)`, edge types
          :math:`(E)`, batch vector :math:`(N)` or :obj:`None`, node entities :math:`(N)`,
          sentence pairs :math:`(2, S)`, token states :math:`(T, C_{tok})`, token batch
          :math:`(T)` or :obj:`None`, token edges :math:`(2, E_t)`
        - **output:** node features :math:`(N, C)`
    """
    _alpha: OptTensor

    def __init__(
        self,
        channels: int,
        token_channels: Optional[int] = None,
        num_edge_types: int = 3,
        cross_heads: int = 4,
        num_entity_embeddings: int = 64,
        num_sentence_embeddings: int = 64,
        ffn_channels: Optional[int] = None,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        attention: str = "sparse",
        global_head: bool = True,
        graph_attention: str = "graph",
        cross_attention: bool = True,
        cross_local: bool = True,
        cross_global: bool = True,
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
        cross_chunk_edges: Optional[int] = 2 ** 19,
        **kwargs,
    ):
        check_message_passing_kwargs(type(self).__name__,
                                     inspect.signature(GTNConv.__init__).parameters, kwargs)
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)

        check_gtn_arguments(
            channels, num_edge_types=num_edge_types, cross_heads=cross_heads,
            num_entity_embeddings=num_entity_embeddings,
            num_sentence_embeddings=num_sentence_embeddings, dropout=dropout,
            attention=attention, graph_attention=graph_attention,
            cross_attention=cross_attention, cross_local=cross_local, cross_global=cross_global,
            cross_chunk_edges=cross_chunk_edges)

        self.channels = channels
        self.token_channels = channels if token_channels is None else token_channels
        self.num_edge_types = num_edge_types
        self.global_head = global_head
        self.graph_attention = graph_attention
        self.heads = num_edge_types + int(global_head)
        self.head_channels = channels // (num_edge_types + 1)
        self.cross_attention = cross_attention
        self.cross_local = cross_local and cross_attention
        self.cross_global = cross_global and cross_attention
        self.cross_heads = cross_heads if cross_attention else 0
        if self.cross_local and self.cross_global:
            self.cross_global_heads = cross_heads // 2
        else:
            self.cross_global_heads = cross_heads if self.cross_global else 0
        self.cross_local_heads = self.cross_heads - self.cross_global_heads
        self.num_entity_embeddings = num_entity_embeddings
        self.num_sentence_embeddings = num_sentence_embeddings
        self.ffn_channels = 2 * channels if ffn_channels is None else ffn_channels
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.cross_chunk_edges = cross_chunk_edges
        self.attention = attention
        self._alpha = None

        K, d = num_edge_types, self.head_channels
        # Graph attention. Local heads 0..K-1 (queries/keys from x), global head K (queries/keys
        # from x~ in graph mode, from x in self-attention mode); values from x for all heads.
        self.lin_query = Linear(channels, K * d, bias=bias)
        self.lin_key = Linear(channels, K * d, bias=bias)
        if global_head:
            self.lin_query_global = Linear(channels, d, bias=bias)
            self.lin_key_global = Linear(channels, d, bias=bias)
        else:
            self.register_parameter("lin_query_global", None)
            self.register_parameter("lin_key_global", None)
        self.lin_value = Linear(channels, self.heads * d, bias=bias)
        self.lin_graph_out = Linear(self.heads * d, channels, bias=bias)
        self.norm_graph = LayerNorm(channels, eps=layer_norm_eps)
        if global_head and graph_attention == "graph":
            self.emb_entity = Embedding(num_entity_embeddings + 1, channels)
            self.emb_sentence = Embedding(num_sentence_embeddings + 1, channels)
        else:
            self.register_parameter("emb_entity", None)
            self.register_parameter("emb_sentence", None)

        # Cross attention.
        if cross_attention:
            self.lin_cross_query = Linear(channels, channels, bias=bias)
            self.lin_cross_key = Linear(self.token_channels, channels, bias=bias)
            self.lin_cross_value = Linear(self.token_channels, channels, bias=bias)
            self.lin_cross_out = Linear(channels, channels, bias=bias)
            self.norm_cross = LayerNorm(channels, eps=layer_norm_eps)
        else:
            for name in ("lin_cross_query", "lin_cross_key", "lin_cross_value",
                         "lin_cross_out", "norm_cross"):
                self.register_parameter(name, None)

        # Feed-forward.
        self.ffn = Sequential(Linear(channels, self.ffn_channels, bias=bias), GELU(),
                              Linear(self.ffn_channels, channels, bias=bias))
        self.norm_ffn = LayerNorm(channels, eps=layer_norm_eps)

        self.reset_parameters()

    # ------------------------------------------------------------------------------------------
    @property
    def attention(self) -> str:
        """``"sparse"`` or ``"dense"``; may be switched at any time (same parameters)."""
        return self._attention

    @attention.setter
    def attention(self, value: str) -> None:
        check_gtn_arguments(attention=value)
        self._attention = value

    def reset_parameters(self):
        super().reset_parameters()
        for module in (self.lin_query, self.lin_key, self.lin_query_global, self.lin_key_global,
                       self.lin_value, self.lin_graph_out, self.norm_graph, self.lin_cross_query,
                       self.lin_cross_key, self.lin_cross_value, self.lin_cross_out,
                       self.norm_cross, self.ffn[0], self.ffn[2], self.norm_ffn):
            if module is not None:
                module.reset_parameters()
        for emb in (self.emb_entity, self.emb_sentence):
            if emb is not None:  # BERT-style initialisation of embedding tables
                torch.nn.init.normal_(emb.weight, std=0.02)

    def __repr__(self) -> str:
        extra = ""
        if self.token_channels != self.channels:
            extra += f", token_channels={self.token_channels}"
        if not self.global_head:
            extra += ", global_head=False"
        if self.graph_attention != "graph":
            extra += f", graph_attention={self.graph_attention!r}"
        if not self.cross_attention:
            extra += ", cross_attention=False"
        else:
            if not self.cross_local:
                extra += ", cross_local=False"
            if not self.cross_global:
                extra += ", cross_global=False"
        return (f"{self.__class__.__name__}({self.channels}, heads={self.heads}, "
                f"cross_heads={self.cross_heads}, attention={self.attention!r}{extra})")

    # ------------------------------------------------------------------------------------------
    @overload
    def forward(
        self,
        x: Tensor,
        edge_index: OptTensor = None,
        edge_type: OptTensor = None,
        batch: OptTensor = None,
        node_entity: OptTensor = None,
        sentence_index: OptTensor = None,
        token_x: OptTensor = None,
        token_batch: OptTensor = None,
        token_edge_index: OptTensor = None,
        return_attention_weights: None = None,
        check_inputs: Optional[bool] = None,
        structure: Optional[GTNStructure] = None,
    ) -> Tensor:
        ...

    @overload
    def forward(
        self,
        x: Tensor,
        edge_index: OptTensor = None,
        edge_type: OptTensor = None,
        batch: OptTensor = None,
        node_entity: OptTensor = None,
        sentence_index: OptTensor = None,
        token_x: OptTensor = None,
        token_batch: OptTensor = None,
        token_edge_index: OptTensor = None,
        return_attention_weights: bool = ...,
        check_inputs: Optional[bool] = None,
        structure: Optional[GTNStructure] = None,
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        ...

    def forward(
        self,
        x: Tensor,
        edge_index: OptTensor = None,
        edge_type: OptTensor = None,
        batch: OptTensor = None,
        node_entity: OptTensor = None,
        sentence_index: OptTensor = None,
        token_x: OptTensor = None,
        token_batch: OptTensor = None,
        token_edge_index: OptTensor = None,
        return_attention_weights: Optional[bool] = None,
        check_inputs: Optional[bool] = None,
        structure: Optional[GTNStructure] = None,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
        r"""Runs the layer on a batch of documents.

        Args:
            x (torch.Tensor): ``[N, C]`` node features; the nodes of each document contiguous.
            edge_index (torch.Tensor): ``[2, E]`` source -> target, no self loops (the layer adds
                one per node and local head) and no duplicates. Needed with
                ``graph_attention="graph"``; ignored with ``"self"``.
            edge_type (torch.Tensor): ``[E]`` in ``[0, num_edge_types)``: the local head of
                each edge.
            batch (torch.Tensor, optional): ``[N]`` sorted document index; ``None`` = one
                document.
            node_entity (torch.Tensor, optional): ``[N]`` entity index of every node within its
                document, -1 for none (document node). Needed by the global head (eq. 2).
            sentence_index (torch.Tensor, optional): ``[2, S]`` pairs (node, sentence id within
                its document); a node's sentence embedding is the mean over its pairs
                (duplicates count), nodes without pairs take the reserved row. Needed by the
                global head (eq. 2).
            token_x (torch.Tensor, optional): ``[T, C_tok]`` token states, contiguous per
                document. Needed with cross attention.
            token_batch (torch.Tensor, optional): ``[T]`` sorted document index of every token;
                ``None`` = one document.
            token_edge_index (torch.Tensor, optional): ``[2, E_t]`` pairs (token, node): the
                token lies in a sentence where the node occurs. Needed by local cross heads.
            return_attention_weights (bool, optional): If set (to any value), also return
                ``(edge_index_with_self_loops, alpha)`` of the local graph heads (needs
                ``graph_attention="graph"``): ``edge_index_with_self_loops`` is
                ``[2, E + N * K]``, the input edges in input order followed by the self loops
                ordered node-major (column ``E + i * K + k`` is node ``i``'s self loop in head
                ``k``); ``alpha`` is ``[E + N * K]``, the weight of every column in its own head
                (input edge ``e`` belongs to head ``edge_type[e]``). Weights of a node in a head
                sum to 1 over the columns pointing at it.
            check_inputs (bool, optional): check every argument first and raise a
                ``ValueError`` naming the first one outside this contract
                (:func:`~pyg_docre.nn.conv.gtn_checks.check_gtn_inputs`; it reads tensors back
                to the host). ``None`` (default): check, except under ``torch.compile``.
                Callers that checked once for several layers pass ``False``.
            structure (GTNStructure, optional): the tensors derived from the graph inputs
                (:meth:`structure`: sizes, the local heads' per-head graph, the padded
                layouts, the structure embeddings' rows). Given, the layer reads nothing back
                to the host and repeats none of that work (a stack of layers builds it once);
                ``None``: built here. Checked against the inputs with ``check_inputs``.

        Returns:
            ``[N, C]`` node features, or ``(out, (edge_index_with_self_loops, alpha))``.
        """
        num_nodes = x.size(0)
        need_graph = self.graph_attention == "graph"
        if return_attention_weights is not None and not need_graph:
            raise ValueError("return_attention_weights needs graph_attention='graph' (there "
                             "are no edge-wise weights in self-attention mode)")
        if check_inputs is None:
            check_inputs = not is_compiling()
        if check_inputs:
            check_gtn_inputs(self, x, edge_index, edge_type, batch, node_entity, sentence_index,
                             token_x, token_batch, token_edge_index)
        structure = resolve_gtn_structure(self.structure, structure, check_inputs, edge_index,
                                          edge_type, batch, node_entity, sentence_index,
                                          token_batch, num_nodes,
                                          0 if token_x is None else token_x.size(0))

        # 1. Graph attention ----------------------------------------------------------------
        h, attn = self._graph_attention(x, edge_index, edge_type, batch, sentence_index,
                                        structure, return_attention_weights is not None)
        h = self.norm_graph(x + F.dropout(self.lin_graph_out(h), self.dropout, self.training))

        # 2. Cross attention ----------------------------------------------------------------
        if self.cross_attention:
            assert token_x is not None
            c = self._cross(h, batch, token_x, token_batch, token_edge_index, structure)
            h = self.norm_cross(h + F.dropout(self.lin_cross_out(c), self.dropout,
                                              self.training))

        # 3. Feed-forward -------------------------------------------------------------------
        h = self.norm_ffn(h + F.dropout(self.ffn(h), self.dropout, self.training))

        if return_attention_weights is not None:
            assert attn is not None
            return h, attn
        return h

    # ------------------------------------------------------------------------------------------
    def structure(self, edge_index: OptTensor = None, edge_type: OptTensor = None,
                  batch: OptTensor = None, node_entity: OptTensor = None,
                  sentence_index: OptTensor = None, token_batch: OptTensor = None,
                  num_nodes: int = 0, num_tokens: int = 0,
                  sizes: Optional[BatchSizes] = None) -> GTNStructure:
        r"""The :class:`~pyg_docre.nn.conv.gtn_structure.GTNStructure` of a batch for this
        layer (and every layer configured like it), to pass as ``structure=`` to several
        calls; see :func:`~pyg_docre.nn.conv.gtn_structure.gtn_structure` (``sizes`` given:
        no host synchronisation)."""
        return gtn_structure(self, edge_index, edge_type, batch, node_entity, sentence_index,
                             token_batch, num_nodes, num_tokens, sizes)

    def _structure_embedding(self, structure: GTNStructure, sentence_node: Tensor,
                             num_nodes: int) -> Tensor:
        r"""``emb_e(e_i) + mean_{s in S_i} emb_s(s)``, ``[N, C]`` (wrapping indices)."""
        assert self.emb_entity is not None and self.emb_sentence is not None
        entity_row, sentence_row = structure.entity_row, structure.sentence_row
        assert entity_row is not None and sentence_row is not None
        out = self.emb_entity(entity_row)
        emb = self.emb_sentence(sentence_row)
        mean = scatter(emb, sentence_node, dim=0, dim_size=num_nodes, reduce="mean")
        reserved = self.emb_sentence.weight[self.num_sentence_embeddings].expand_as(mean)
        return out + torch.where(structure.has_sentence, mean, reserved)

    def _graph_attention(self, x: Tensor, edge_index: OptTensor, edge_type: OptTensor,
                         batch: OptTensor, sentence_index: OptTensor, structure: GTNStructure,
                         need_alpha: bool) -> Tuple[Tensor, Optional[Tuple[Tensor, Tensor]]]:
        N, K, d = x.size(0), self.num_edge_types, self.head_channels
        num_docs = structure.sizes.num_docs
        value = self.lin_value(x).view(N, self.heads, d)
        p = self.attention_dropout if self.training else 0.0
        nodes = structure.node_layout

        if self.graph_attention == "self":
            query, key = self.lin_query(x), self.lin_key(x)
            if self.global_head:
                assert self.lin_query_global is not None and self.lin_key_global is not None
                query = torch.cat([query, self.lin_query_global(x)], dim=-1)
                key = torch.cat([key, self.lin_key_global(x)], dim=-1)
            query, key = query.view(N, self.heads, d), key.view(N, self.heads, d)
            if self.attention == "sparse":
                assert nodes is not None
                out = layout_attention(query, key, value, nodes, nodes, p)
            else:
                out = dense_self_attention(query, key, value, batch, batch, num_docs, p,
                                           self.training)
            return out.reshape(N, self.heads * d), None

        assert edge_index is not None and edge_type is not None
        query = self.lin_query(x).view(N, K, d)
        key = self.lin_key(x).view(N, K, d)
        if self.attention == "sparse":
            assert structure.local_edge_index is not None
            local, alpha = self._sparse_local_heads(query, key, value[:, :K],
                                                    structure.local_edge_index)
        else:
            local, alpha = dense_local_heads(query, key, value[:, :K], edge_index, edge_type,
                                             batch, num_docs, need_alpha, p, self.training)
        parts = [local]
        if self.global_head:
            assert sentence_index is not None
            assert self.lin_query_global is not None and self.lin_key_global is not None
            x_tilde = x + self._structure_embedding(structure, sentence_index[0], N)
            q_g = self.lin_query_global(x_tilde).view(N, 1, d)
            k_g = self.lin_key_global(x_tilde).view(N, 1, d)
            v_g = value[:, K:]
            if self.attention == "sparse":
                assert nodes is not None
                parts.append(layout_attention(q_g, k_g, v_g, nodes, nodes, p))
            else:
                parts.append(dense_self_attention(q_g, k_g, v_g, batch, batch, num_docs, p,
                                                  self.training))
        out = torch.cat(parts, dim=1).reshape(N, self.heads * d)

        attn = None
        if need_alpha:
            assert alpha is not None
            loops = torch.arange(N, device=x.device).repeat_interleave(K)
            attn = (torch.cat([edge_index, torch.stack([loops, loops])], dim=1), alpha)
        return out, attn

    def _sparse_local_heads(self, query: Tensor, key: Tensor, value: Tensor,
                            local_edge_index: Tensor) -> Tuple[Tensor, Tensor]:
        """Edge-type heads by message passing on the per-head replicated graph
        (:attr:`GTNStructure.local_edge_index`).

        Node ``i`` in head ``k`` becomes virtual node ``i * K + k``; an edge ``j -> i`` of type
        ``k`` becomes ``j * K + k -> i * K + k``, so that PyG's softmax grouped by destination is
        grouped by (destination, head). Self loops are added per virtual node.
        """
        N, K, d = query.shape
        out = self.propagate(local_edge_index, query=query.reshape(N * K, 1, d),
                             key=key.reshape(N * K, 1, d), value=value.reshape(N * K, 1, d),
                             size=(N * K, N * K))
        alpha = self._alpha
        self._alpha = None
        assert alpha is not None
        return out.view(N, K, d), alpha.view(-1)

    # ------------------------------------------------------------------------------------------
    def _cross(self, h: Tensor, batch: OptTensor, token_x: Tensor, token_batch: OptTensor,
               token_edge_index: OptTensor, structure: GTNStructure) -> Tensor:
        assert self.lin_cross_query is not None
        assert self.lin_cross_key is not None and self.lin_cross_value is not None
        N, T = h.size(0), token_x.size(0)
        H, G = self.cross_heads, self.cross_global_heads
        dc = self.channels // H
        query = self.lin_cross_query(h).view(N, H, dc)
        key = self.lin_cross_key(token_x).view(T, H, dc)
        value = self.lin_cross_value(token_x).view(T, H, dc)
        if self.attention == "dense":
            return dense_cross_attention(
                query, key, value, batch, token_batch, token_edge_index,
                structure.sizes.num_docs, G, self.cross_local_heads, self.attention_dropout,
                self.training).reshape(N, H * dc)
        parts = []
        if G > 0:
            p = self.attention_dropout if self.training else 0.0
            assert structure.node_layout is not None and structure.token_layout is not None
            parts.append(layout_attention(query[:, :G], key[:, :G], value[:, :G],
                                          structure.node_layout, structure.token_layout, p))
        if self.cross_local_heads > 0:
            assert token_edge_index is not None
            parts.append(self._chunked_propagate(token_edge_index, query[:, G:], key[:, G:],
                                                 value[:, G:], size=(T, N)))
            self._alpha = None
        return torch.cat(parts, dim=1).reshape(N, H * dc)

    def _chunked_propagate(self, edge_index: Tensor, query: Tensor, key: Tensor, value: Tensor,
                           size: Tuple[int, int]) -> Tensor:
        """Attention over ``edge_index`` (source -> destination), ``[size[1], H, d]``, computed
        over chunks of destination nodes holding at most :attr:`cross_chunk_edges` edges.

        The softmax of a node only involves its own incoming edges, so chunks of whole
        destinations give the same result as one call (up to summation order). With gradients,
        each chunk runs under :func:`torch.utils.checkpoint.checkpoint`: backward recomputes its
        per-edge tensors instead of keeping them for every chunk.
        """
        limit, num_edges = self.cross_chunk_edges, edge_index.size(1)
        if limit is None or num_edges <= limit:
            return self.propagate(edge_index, query=query, key=key, value=value, size=size)
        num_src, num_dst = size
        order = torch.argsort(edge_index[1], stable=True)
        edge_index = edge_index[:, order]
        ends = torch.bincount(edge_index[1], minlength=num_dst).cumsum(0).tolist()
        checkpointed = torch.is_grad_enabled() and any(
            t.requires_grad for t in (query, key, value))
        outputs, first_node, first_edge = [], 0, 0
        while first_node < num_dst:
            # The largest node range whose edges fit into the limit (at least one node).
            last_node = max(bisect.bisect_right(ends, first_edge + limit), first_node + 1)
            last_edge = ends[last_node - 1]
            chunk = edge_index[:, first_edge:last_edge] - torch.tensor(
                [[0], [first_node]], device=edge_index.device)
            args = (chunk, query[first_node:last_node], key, value,
                    (num_src, last_node - first_node))
            if checkpointed:
                outputs.append(checkpoint(self._propagate_chunk, *args, use_reentrant=False))
            else:
                outputs.append(self._propagate_chunk(*args))
            first_node, first_edge = last_node, last_edge
        return torch.cat(outputs, dim=0)

    def _propagate_chunk(self, edge_index: Tensor, query: Tensor, key: Tensor, value: Tensor,
                         size: Tuple[int, int]) -> Tensor:
        return self.propagate(edge_index, query=query, key=key, value=value, size=size)

    # ------------------------------------------------------------------------------------------
    def message(self, query_i: Tensor, key_j: Tensor, value_j: Tensor, index: Tensor,
                ptr: OptTensor, size_i: Optional[int]) -> Tensor:
        r"""One message per (edge, head): :math:`\alpha_{ij}^h \mathbf{v}_{j,h}`, with
        :math:`\alpha` the softmax of :math:`\mathbf{q}_{i,h}^\top \mathbf{k}_{j,h} / \sqrt{d}`
        over the edges into :math:`i` (shapes ``[E, H, d]`` -> ``[E, H, d]``)."""
        alpha = (query_i * key_j).sum(dim=-1) / math.sqrt(query_i.size(-1))
        alpha = softmax(alpha, index, ptr, size_i)
        self._alpha = alpha
        alpha = F.dropout(alpha, p=self.attention_dropout, training=self.training)
        return value_j * alpha.unsqueeze(-1)
