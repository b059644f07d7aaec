"""The Mixture-of-Transformers: experts routed by contiguous segment slices, one joint attention per layer.

Every call runs a *chunk* of consecutive token slots ``[start, end)`` of the spec against the keys/values of
``[0, start)`` held by a :class:`~mot.cache.KVCache` (empty for a plain forward). This single code path
serves training (``forward``), prefilling (``prefill``), repeated downstream runs (``extend``) and
incremental generation (``extend(..., append=True)``).

Why upstream outputs are bit-identical whatever the downstream tokens are, and why cached runs equal
uncached ones exactly when the chunks line up with query groups:

- projections, norms and MLPs run per expert on the expert's own slice (rows of other segments never
  enter the matrix products of a segment);
- attention runs once per *query group* (consecutive segments with the same key horizon), over keys
  ``[0, horizon)`` only, where the horizon is the end of the last slot the group may see. Upstream rows
  therefore never meet a downstream key, not even a masked one. (A masked key adds exact zeros, but a
  longer key axis changes how SIMD reductions and GEMM blocking group the sum, so "masked" alone would not
  be bit-identical between a run with and a run without the downstream segment.)
- rotary tables are looked up by position (see :func:`mot.layers.rotary_cos_sin`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from mot.attention import additive_mask, joint_attention
from mot.cache import KVCache
from mot.config import MoTConfig
from mot.errors import ArgumentTypeError, SpecError, check_bool, describe
from mot.expert import Expert
from mot.layers import apply_rotary, rotary_cos_sin, rotary_table
from mot.layout import (
    ChunkPlan,
    ValidLengths,
    check_cut,
    check_spec,
    check_valid_lengths,
    lengths_tensor,
    plan_chunk,
    positions_from_valid,
    token_valid,
)
from mot.mask import compile_block_mask, compile_mask, unpadded_mask
from mot.spec import AttentionSpec

__all__ = ["COMPILE_MODES", "DownstreamCall", "LayerEnd", "MixtureOfTransformers"]

#: ``torch.compile`` modes :meth:`MixtureOfTransformers.compile_layers` accepts (besides None, the default).
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class _Run:
    """Consecutive chunk pieces processed by the same expert (one matmul per projection)."""

    expert: str
    names: tuple[str, ...]
    lengths: tuple[int, ...]


@dataclass(frozen=True)
class _QueryGroup:
    """Consecutive chunk rows ``[row_start, row_end)`` that may see keys ``[0, horizon)`` only.

    ``read_in_last_layer``: some row belongs to an expert whose output is read (False: every row is of a
    keys/values-only expert, whose last-layer attention nobody reads).
    """

    row_start: int
    row_end: int
    horizon: int
    read_in_last_layer: bool = True


def _horizon(spec: AttentionSpec, name: str) -> int:
    """One past the last slot that tokens of segment ``name`` may see."""
    # The own segment always counts: a padding slot sees itself, whatever the rule.
    ends = [spec.start(name) + spec.segment(name).length]
    ends += [spec.start(t) + spec.segment(t).length for t in spec.sees.get(name, ())]
    return max(ends)


class MixtureOfTransformers(nn.Module):
    """Experts with their own weights (and widths) meeting in one joint attention per layer.

    Args:
        config: depth, shared head layout and the experts.

    Inputs are per-segment embeddings ``{segment: (B, n, width of its expert)}``; outputs are the final-norm
    hidden states ``{segment: (B, n, width)}``. Outputs at padding slots are unspecified (finite). The
    segments of a keys/values-only expert (``ExpertConfig.last_layer_kv_only``) have no outputs: they are
    absent from the returned dict (their keys and values still reach the other experts and the cache).

    Every entry checks its arguments before running and raises a :class:`~mot.MoTError` naming the argument
    (a wrong shape, dtype or device, an unknown segment, valid lengths out of range, a cache built by a
    model of another depth or head layout, or for another batch); a call that raises leaves the cache
    unchanged. ``forward``, ``prefill`` and ``extend(..., append=True)`` also refuse non-finite inputs;
    ``extend(..., append=False)`` does not (see there).
    """

    def __init__(self, config: MoTConfig) -> None:
        super().__init__()
        if not isinstance(config, MoTConfig):
            raise ArgumentTypeError(f"config: expected a MoTConfig, received {type(config).__name__}")
        self.config = config
        self.experts = nn.ModuleDict({name: Expert(cfg, config) for name, cfg in config.experts.items()})
        self._compiled_layers: (
            Callable[..., tuple[list[Tensor | None], list[Tensor], list[Tensor]]] | None
        ) = None
        self._kv_only_experts = frozenset(
            name for name, cfg in config.experts.items() if cfg.last_layer_kv_only
        )
        self._activation_checkpointing = False
        # parameter-free, called last in every layer: a unit sharded with FSDP2 ends there (see layer_units)
        self.layer_ends = nn.ModuleList(LayerEnd() for _ in range(config.n_layers))

    def unbuilt_tensors(self) -> dict[str, str]:
        """``{state-dict name: reason}`` of the tensors that a model of this shape with full experts has
        and this one does not build (the last layers of keys/values-only experts; see
        :attr:`mot.Expert.unbuilt_tensors`), for importers and loaders to drop from older state dicts."""
        return {
            f"experts.{name}.{tensor}": (
                f"not built: expert {name!r} is last_layer_kv_only (only its keys and values are read, "
                "so this tensor of its last layer or final norm feeds nothing and gets no gradient)"
            )
            for name, expert in self.experts.items()
            for tensor in expert.unbuilt_tensors
        }

    # --- public entry points -------------------------------------------------------------------------
    def forward(
        self, inputs: Mapping[str, Tensor], spec: AttentionSpec, valid_lengths: ValidLengths | None = None
    ) -> dict[str, Tensor]:
        """Run the given segments (usually all of ``spec``) from the start of the sequence.

        Args:
            inputs: ``{segment: (B, n, W)}``; consecutive segments from the first one (the last may stop
                at a block boundary that nothing before it sees past).
            spec: the attention spec.
            valid_lengths: ``{segment: (B,) ints}`` per-sample valid lengths (right padding), or None.

        Returns:
            ``{segment: (B, n, W)}`` hidden states after the expert's final norm, for every given segment
            but those of keys/values-only experts.
        """
        return self._run(
            inputs, spec, KVCache(check_spec(spec)), valid_lengths, append=False, check_finite=True
        )

    def prefill(
        self, inputs: Mapping[str, Tensor], spec: AttentionSpec, valid_lengths: ValidLengths | None = None
    ) -> KVCache:
        """Run the upstream segments once and return their keys/values as a :class:`KVCache`.

        Same arguments as :meth:`forward`. To also get the outputs, use
        ``cache = KVCache(spec); out = model.extend(inputs, spec, cache, append=True)``. The cache holds
        the keys and values of every layer for every given segment, those of keys/values-only experts
        included.
        """
        cache = KVCache(check_spec(spec))
        self._run(inputs, spec, cache, valid_lengths, append=True, check_finite=True)
        return cache

    def extend(
        self,
        inputs: Mapping[str, Tensor],
        spec: AttentionSpec,
        cache: KVCache,
        valid_lengths: ValidLengths | None = None,
        append: bool = False,
    ) -> dict[str, Tensor]:
        """Run the next segments (or the next blocks of a segment) against the cached ones.

        Args:
            inputs: ``{segment: (B, n, W)}`` continuing the sequence right after the cached slots.
            spec: the spec the cache was built with.
            cache: keys/values of the leading slots.
            valid_lengths: per-sample valid lengths of the given segments (those of cached segments are
                remembered by the cache).
            append: False leaves the cache unchanged (run a downstream segment many times);
                True appends the new slots to it in place (incremental generation).

        Returns:
            ``{segment: (B, n, W)}`` hidden states after the expert's final norm, for every given segment
            but those of keys/values-only experts (whose keys and values are still appended).

        With ``append=True`` non-finite inputs are refused (they would be stored in the cache). With
        ``append=False`` they are not checked: this call runs once per ODE step of a policy, and the check
        would add a device synchronization per step on a GPU; a NaN there reaches only this call's outputs.
        Every other check (types, shapes, dtypes, the cache fitting this model) runs in both modes.
        """
        if not isinstance(cache, KVCache):
            raise ArgumentTypeError(f"cache: expected a KVCache, received {type(cache).__name__}")
        check_bool("append", append)
        return self._run(inputs, spec, cache, valid_lengths, append=append, check_finite=append)

    def prepare_downstream(
        self, inputs: Mapping[str, Tensor], spec: AttentionSpec, cache: KVCache
    ) -> DownstreamCall:
        """Check a read-only call (``extend(inputs, spec, cache, append=False)``) once and lay it out, for
        :meth:`run_downstream` to run with new tokens of the same shapes many times (each ODE step).

        Args:
            inputs: ``{segment: (B, n, W)}`` example tokens of the downstream segment(s) (only their shapes,
                dtypes and devices are read).
            spec: the spec the cache was built with.
            cache: keys/values of the leading slots; the call runs against the cache as it is now (a later
                append does not change a prepared call).

        Raises every error ``extend(..., append=False)`` raises for these arguments.
        """
        if not isinstance(cache, KVCache):
            raise ArgumentTypeError(f"cache: expected a KVCache, received {type(cache).__name__}")
        layout, derived = self._prepare(inputs, spec, cache, None, append=False, check_finite=False)
        _, _, cos, sin, masks = derived
        cached = (tuple(cache.keys), tuple(cache.values)) if cache.length else None
        shapes = tuple((name, tuple(x.shape), x.dtype, x.device) for name, x in inputs.items())
        return DownstreamCall(spec, shapes, layout, cached, cos, sin, tuple(masks))

    def run_downstream(self, call: DownstreamCall, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Run a call prepared by :meth:`prepare_downstream` on new tokens of the prepared shapes: the
        outputs of ``extend(inputs, spec, cache, append=False)``, with the same floats, and no per-call
        layout, mask or cache work. Pure in its arguments (no Python state is read or written), so a caller
        may compile a larger region around it (e.g. an ODE step with its input and output projections).

        Raises :class:`~mot.SpecError` when ``inputs`` are not the prepared segments, shapes, dtypes and
        devices (checked by metadata only; values are not read).
        """
        if not isinstance(call, DownstreamCall):
            raise ArgumentTypeError(f"call: expected a DownstreamCall, received {type(call).__name__}")
        if not isinstance(inputs, Mapping) or list(inputs) != [shape[0] for shape in call.shapes]:
            got = list(inputs) if isinstance(inputs, Mapping) else type(inputs).__name__
            raise SpecError(
                f"inputs: expected the prepared segments {[s[0] for s in call.shapes]}, received {got}"
            )
        for name, shape, dtype, device in call.shapes:
            x = inputs[name]
            if not isinstance(x, Tensor) or tuple(x.shape) != shape or x.dtype != dtype or x.device != device:
                raise SpecError(
                    f"inputs[{name!r}]: expected the prepared {dtype} {shape} on {device}, received "
                    f"{describe(x)}"
                )
        xs = [_cat([inputs[name] for name in run.names], dim=1) for run in call.layout.runs]
        cached = (list(call.cached[0]), list(call.cached[1])) if call.cached is not None else None
        hidden, _, _ = self._layers(xs, cached, call.cos, call.sin, list(call.masks), call.layout, False)
        return _outputs(call.layout.runs, hidden)

    # --- the single code path ------------------------------------------------------------------------
    def _check_inputs(self, inputs: Mapping[str, Tensor], spec: AttentionSpec) -> tuple[int, Tensor]:
        check_spec(spec)
        unknown_experts = [e for e in spec.experts if e not in self.experts]
        if unknown_experts:
            raise SpecError(
                f"spec: experts {unknown_experts} are not in this model, which has {list(self.experts)}"
            )
        if not isinstance(inputs, Mapping) or not inputs:
            raise SpecError("inputs: expected a non-empty mapping {segment: (B, n, width)}")
        param = next(self.parameters())
        compute = compute_dtype(param)
        batch = None
        for name, x in inputs.items():
            if not isinstance(name, str) or name not in spec.names:
                raise SpecError(f"inputs: unknown segment {name!r}, known segments {list(spec.names)}")
            seg = spec.segment(name)
            width = self.config.experts[seg.expert].width
            if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != width:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise SpecError(
                    f"inputs[{name!r}]: expected shape (B, n, {width}) for expert {seg.expert!r}, "
                    f"received {shape}"
                )
            # under autocast, embeddings stay in the weights' dtype and projections come in autocast's
            if x.dtype not in (param.dtype, compute) or x.device != param.device:
                expected = f"{param.dtype}" + (f" or {compute} (autocast)" if compute != param.dtype else "")
                raise SpecError(
                    f"inputs[{name!r}]: expected dtype {expected} on {param.device} (the model's), "
                    f"received {x.dtype} on {x.device}"
                )
            if x.shape[0] < 1:
                raise SpecError(
                    f"inputs[{name!r}]: expected a batch size B >= 1, received shape {tuple(x.shape)}"
                )
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise SpecError(f"inputs[{name!r}]: expected batch size {batch}, received {x.shape[0]}")
        if compute != param.dtype:  # what the checks and masks after this one compare with
            param = param.new_empty(0, dtype=compute)
        return int(batch), param

    def _check_finite(self, inputs: Mapping[str, Tensor]) -> None:
        # One device synchronization for all inputs; the offending segment is looked up only on failure.
        finite = torch.stack([torch.isfinite(x).all() for x in inputs.values()])
        if not bool(finite.all()):
            name = next(n for n, ok in zip(inputs, finite.tolist()) if not ok)
            x = inputs[name]
            raise SpecError(
                f"inputs[{name!r}]: expected finite values, received {int(x.isnan().sum())} NaN and "
                f"{int(x.isinf().sum())} inf of {x.numel()}"
            )

    def _check_cache(self, cache: KVCache, spec: AttentionSpec, batch: int, param: Tensor) -> None:
        """The cache must come from this spec, batch and head layout (a model of this depth and heads)."""
        if cache.spec != spec:
            raise SpecError("spec: expected the spec the cache was built with, received a different spec")
        if cache.batch_size is not None and cache.batch_size != batch:
            raise SpecError(f"inputs: expected batch size {cache.batch_size} (the cache's), received {batch}")
        if not cache.length:
            return
        config = self.config
        if len(cache.keys) != config.n_layers:
            raise SpecError(
                f"cache: expected keys/values of {config.n_layers} layers (this model's depth), "
                f"received {len(cache.keys)}"
            )
        expected = (batch, config.n_kv_heads, cache.length, config.head_dim)
        for layer, (k, v) in enumerate(zip(cache.keys, cache.values)):
            if tuple(k.shape) != expected or tuple(v.shape) != expected:
                raise SpecError(
                    f"cache.keys[{layer}]: expected shape {expected} (B, n_kv_heads, length, head_dim of "
                    "this "
                    f"model), received keys {tuple(k.shape)} and values {tuple(v.shape)}"
                )
            if k.dtype != param.dtype or v.dtype != param.dtype or k.device != param.device:
                raise SpecError(
                    f"cache.keys[{layer}]: expected dtype {param.dtype} on {param.device} (the model's), "
                    f"received {k.dtype}/{v.dtype} on {k.device}"
                )
        valid = cache.valid
        if valid.dtype != torch.bool or valid.shape != (batch, cache.length) or valid.device != param.device:
            raise SpecError(
                f"cache.valid: expected a bool tensor of shape {(batch, cache.length)} on {param.device}, "
                f"received {describe(valid)}"
            )

    def _check_valid_lengths(
        self, spec: AttentionSpec, valid_lengths: object, batch: int, param: Tensor
    ) -> dict[str, Tensor]:
        checked = {}
        for name, lengths in check_valid_lengths(spec, valid_lengths).items():
            values = lengths_tensor(name, lengths, spec.segment(name).length, param.device)
            if values.shape[0] != batch:
                raise SpecError(
                    f"valid_lengths[{name!r}]: expected {batch} entries (batch size), received "
                    f"{values.shape[0]}"
                )
            checked[name] = values
        return checked

    def _merge_valid_lengths(
        self, spec: AttentionSpec, cache: KVCache, plan: ChunkPlan, valid_lengths: ValidLengths | None
    ) -> dict[str, Tensor]:
        merged = dict(cache.valid_lengths)
        given = {piece.name for piece in plan.pieces}
        for name, lengths in (valid_lengths or {}).items():
            spec.segment(name)
            if name not in given:
                raise SpecError(
                    f"valid_lengths[{name!r}]: segment is not among the inputs {sorted(given)}; "
                    "give valid lengths together with the segment's tokens"
                )
            values = torch.as_tensor(lengths, device=cache.valid.device if cache.valid is not None else None)
            partly_cached = cache.segments().get(name)
            if partly_cached and not torch.equal(
                values.long().cpu(),
                merged.get(name, torch.full_like(values, spec.segment(name).length)).long().cpu(),
            ):
                raise SpecError(
                    f"valid_lengths[{name!r}]: the segment is partly cached with other valid lengths; "
                    "give a segment's valid lengths with its first tokens"
                )
            merged[name] = values
        return merged

    def _prepare(
        self,
        inputs: Mapping[str, Tensor],
        spec: AttentionSpec,
        cache: KVCache,
        valid_lengths: ValidLengths | None,
        append: bool,
        check_finite: bool,
    ) -> tuple[
        _ChunkLayout, tuple[dict[str, Tensor], Tensor, Tensor | None, Tensor | None, list[object | None]]
    ]:
        """Every check of a call, then its layout and attention inputs (see `_attention_inputs`)."""
        # Every check runs before anything is computed or stored: a call that raises changes nothing.
        batch, param = self._check_inputs(inputs, spec)
        self._check_cache(cache, spec, batch, param)
        valid_lengths = self._check_valid_lengths(spec, valid_lengths, batch, param)
        lengths = tuple((name, x.shape[1]) for name, x in inputs.items())
        layout = _chunk_layout(spec, lengths, cache.length, self._kv_only_experts)
        if check_finite:
            self._check_finite(inputs)
        # A read-only call (a downstream segment run once per ODE step) against an unchanged cache sees
        # the same positions and masks every time: derive them once per cache state.
        reusable = not append and not valid_lengths
        key = (lengths, param.dtype, param.device)
        derived = cache._derived.get(key) if reusable else None
        if derived is None:
            derived = self._attention_inputs(spec, cache, layout, valid_lengths, batch, param)
            if reusable:
                cache._derived[key] = derived
        return layout, derived

    def _run(
        self,
        inputs: Mapping[str, Tensor],
        spec: AttentionSpec,
        cache: KVCache,
        valid_lengths: ValidLengths | None,
        append: bool,
        check_finite: bool,
    ) -> dict[str, Tensor]:
        layout, derived = self._prepare(inputs, spec, cache, valid_lengths, append, check_finite)
        merged, valid, cos, sin, masks = derived
        xs = [_cat([inputs[name] for name in run.names], dim=1) for run in layout.runs]
        cached = (cache.keys, cache.values) if cache.length else None
        layers = self._compiled_layers or self._layers
        hidden, new_keys, new_values = layers(xs, cached, cos, sin, masks, layout, append)
        if append:
            cache._store(new_keys, new_values, valid, merged)
        return _outputs(layout.runs, hidden)

    def _layers(
        self,
        xs: list[Tensor],
        cached: tuple[list[Tensor], list[Tensor]] | None,
        cos: Tensor | None,
        sin: Tensor | None,
        masks: list[object | None],
        layout: _ChunkLayout,
        append: bool,
    ) -> tuple[list[Tensor | None], list[Tensor], list[Tensor]]:
        """Every layer over one chunk, then each expert's final norm: the tensor work of a call, with no
        checks and no Python state (what :meth:`compile_layers` compiles).

        ``xs``: per expert run ``(B, n_run, W)``; ``cached``: per layer keys and values ``(B, Hkv, start, D)``
        of the leading slots (None when nothing is cached). Returns the normed hidden states per run (None
        for a keys/values-only expert) and, with ``append``, each layer's keys and values of slots
        ``[0, end)``.
        """
        runs = layout.runs
        # Recomputing a layer in backward is worth it only when there is a backward; the keys and values
        # a cache stores are outputs of the layer, so checkpointing does not change what is stored.
        checkpointed = self._activation_checkpointing and torch.is_grad_enabled()
        new_keys, new_values = [], []
        for layer_index in range(self.config.n_layers):
            cached_kv = (cached[0][layer_index], cached[1][layer_index]) if cached is not None else None
            arguments = (layer_index, xs, cached_kv, cos, sin, masks, layout)
            if checkpointed:
                xs, k, v = torch.utils.checkpoint.checkpoint(self._layer, *arguments, use_reentrant=False)
            else:
                xs, k, v = self._layer(*arguments)
            if append:
                new_keys.append(k)
                new_values.append(v)
        outputs = [self.experts[run.expert].output(x) for run, x in zip(runs, xs)]
        return outputs, new_keys, new_values

    def _layer(
        self,
        layer_index: int,
        xs: list[Tensor],
        cached_kv: tuple[Tensor, Tensor] | None,
        cos: Tensor | None,
        sin: Tensor | None,
        masks: list[object | None],
        layout: _ChunkLayout,
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        """Layer ``layer_index`` of every run: projections, one joint attention, output and MLP.

        Returns the runs' hidden states ``(B, n_run, W)`` (a keys/values-only layer passes its input
        through) and the layer's keys and values ``(B, Hkv, start + n, D)`` (the cached ones first).
        """
        runs, groups, plan = layout.runs, layout.groups, layout.plan
        batch = xs[0].shape[0]
        run_lengths = [sum(run.lengths) for run in runs]
        heads = self.config.n_heads * self.config.head_dim
        backend = self.config.attention_backend
        layers = [self.experts[run.expert].layers[layer_index] for run in runs]
        projected = [layer(x) for layer, x in zip(layers, xs)]
        q, k = _cat([p[0] for p in projected]), _cat([p[1] for p in projected])
        if cos is not None:  # queries and keys in one pass (elementwise, so the same floats)
            q, k = apply_rotary(torch.cat((q, k), dim=1), cos, sin).split([q.shape[1], k.shape[1]], dim=1)
        v = _cat([p[2] for p in projected])
        if cached_kv is not None:
            k = torch.cat((cached_kv[0], k), dim=2)
            v = torch.cat((cached_kv[1], v), dim=2)
        read = _groups_read(groups, masks, last=layer_index == self.config.n_layers - 1)
        if len(groups) == 1 and read:
            horizon = groups[0].horizon
            out = joint_attention(q, k[:, :, :horizon], v[:, :, :horizon], masks[0], backend)
            attended = out.transpose(1, 2).reshape(batch, -1, heads)
        else:  # rows of skipped groups stay unset: only keys/values-only layers get them, and drop them
            attended = q.new_empty(batch, plan.end - plan.start, heads)
            for group, mask in read:
                rows = slice(group.row_start, group.row_end)
                out = joint_attention(
                    q[:, :, rows], k[:, :, : group.horizon], v[:, :, : group.horizon], mask, backend
                )
                attended[:, rows] = out.transpose(1, 2).reshape(batch, -1, heads)
        parts = attended.split(run_lengths, dim=1) if len(runs) > 1 else (attended,)
        xs = [layer(x, part) for layer, x, part in zip(layers, xs, parts)]
        return self.layer_ends[layer_index](xs), k, v

    def layer_units(self) -> list[tuple[nn.Module, ...]]:
        """Per layer, every expert's layer of that depth (the modules whose weights one joint-attention
        layer uses, in expert order), then the layer's :class:`LayerEnd`.

        One unit is the natural shard of FSDP2: ``for unit in model.layer_units(): fully_shard(list(unit))``
        all-gathers a layer's weights of every expert together when the layer starts. FSDP2 treats a
        group of modules as done with its forward when each has run; the layer's end runs last in every
        call, and returns every expert's output of the layer, so the group is released (and its backward
        hooks set on every output) exactly when the layer is done, whichever experts a loss depends on.
        """
        return [
            (*(expert.layers[index] for expert in self.experts.values()), self.layer_ends[index])
            for index in range(self.config.n_layers)
        ]

    def set_activation_checkpointing(self, enabled: bool) -> MixtureOfTransformers:
        """Keep only each layer's inputs in training and recompute the layer in backward (``torch.utils.
        checkpoint``, non-reentrant); returns ``self``.

        Outputs and gradients are unchanged (the recomputation runs the same operations on the same inputs);
        memory for activations drops from every layer's intermediates to each layer's inputs plus one layer's
        intermediates, at the cost of a second forward of every layer. Calls without gradients (inference,
        caching) are not affected.
        """
        check_bool("enabled", enabled)
        self._activation_checkpointing = enabled
        return self

    @property
    def activation_checkpointing(self) -> bool:
        """Whether :meth:`set_activation_checkpointing` turned recomputation on."""
        return self._activation_checkpointing

    def compile_layers(self, *, mode: str | None = None, dynamic: bool = False) -> MixtureOfTransformers:
        """Run the layers of every call through ``torch.compile`` (checks, layouts, masks and the cache
        stay in Python); returns ``self``.

        Each chunk layout (which segments a call runs, against how long a cache) compiles once, on first
        use; outputs equal the eager ones to float tolerance (fused kernels reorder sums), so the exact
        equalities of the eager path (cached == uncached, upstream independent of downstream) hold only
        to that tolerance. ``mode`` and ``dynamic`` are ``torch.compile``'s.
        """
        check_bool("dynamic", dynamic)
        if mode is not None and mode not in COMPILE_MODES:
            raise SpecError(f"mode: expected None or one of {list(COMPILE_MODES)}, received {mode!r}")
        # Every guard is kept: another layout, batch, dtype or device compiles anew instead of reusing a
        # graph (dropping the guards on the experts' modules saved no measurable time).
        self._compiled_layers = torch.compile(self._layers, mode=mode, dynamic=dynamic)
        return self

    @property
    def layers_compiled(self) -> bool:
        """Whether :meth:`compile_layers` was called."""
        return self._compiled_layers is not None

    def _attention_inputs(
        self,
        spec: AttentionSpec,
        cache: KVCache,
        layout: _ChunkLayout,
        valid_lengths: ValidLengths | None,
        batch: int,
        param: Tensor,
    ) -> tuple[dict[str, Tensor], Tensor, Tensor | None, Tensor | None, list[object | None]]:
        """Valid lengths, slot validity, rotary tables and masks of one call (pure in its arguments)."""
        plan = layout.plan
        merged = self._merge_valid_lengths(spec, cache, plan, valid_lengths)
        padded = bool(merged)
        if padded and not valid_lengths and self.config.attention_backend == "sdpa":
            return self._padded_slices(spec, cache, layout, merged, batch, param)
        if padded:
            valid = token_valid(spec, merged, batch, end=plan.end, device=param.device)
        else:  # no padding anywhere so far: positions are slot indices
            valid = torch.ones(batch, plan.end, dtype=torch.bool, device=param.device)
        cos = sin = None
        if self.config.use_rotary:
            if padded:
                positions = positions_from_valid(valid)[:, plan.start :]
                cos, sin = rotary_cos_sin(positions, self.config.head_dim, self.config.rope_base)
            else:
                cos, sin = rotary_table(plan.end, self.config.head_dim, self.config.rope_base, param.device)
                cos, sin = cos[None, plan.start : plan.end], sin[None, plan.start : plan.end]
        masks = self._masks(spec, plan, layout.groups, valid, padded, param.dtype)
        return merged, valid, cos, sin, masks

    def _padded_slices(
        self,
        spec: AttentionSpec,
        cache: KVCache,
        layout: _ChunkLayout,
        merged: dict[str, Tensor],
        batch: int,
        param: Tensor,
    ) -> tuple[dict[str, Tensor], Tensor, Tensor | None, Tensor | None, list[object | None]]:
        """`_attention_inputs` of a call that brings no valid lengths against a padded cache: slices of
        the validity, rotary tables and additive mask of the whole spec, derived once for the cache's
        valid lengths (each foresight scale and ODE step of a plan then costs no mask compilation). The
        same values as deriving them per call: the mask predicate and positions of a slot depend only on
        the validity of the slots up to it."""
        key = (batch, param.dtype, param.device, tuple((n, id(t)) for n, t in merged.items()))
        memo = cache._padded_layout
        if memo is None or memo[0] != key:
            valid = token_valid(spec, merged, batch, device=param.device)
            cos = sin = None
            if self.config.use_rotary:
                positions = positions_from_valid(valid)
                cos, sin = rotary_cos_sin(positions, self.config.head_dim, self.config.rope_base)
            mask = additive_mask(compile_mask(spec, valid=valid), param.dtype)
            memo = cache._padded_layout = (key, valid, cos, sin, mask)
        _, valid, cos, sin, mask = memo
        plan = layout.plan
        if cos is not None and sin is not None:
            cos, sin = cos[:, plan.start : plan.end], sin[:, plan.start : plan.end]
        masks: list[object | None] = [
            mask[:, plan.start + group.row_start : plan.start + group.row_end, : group.horizon]
            for group in layout.groups
        ]
        return merged, valid[:, : plan.end], cos, sin, masks

    def _masks(
        self,
        spec: AttentionSpec,
        plan: ChunkPlan,
        groups: tuple[_QueryGroup, ...],
        valid: Tensor,
        padded: bool,
        dtype: torch.dtype,
    ) -> list[object | None]:
        masks: list[object | None] = []
        for group in groups:
            queries = (plan.start + group.row_start, plan.start + group.row_end)
            if self.config.attention_backend == "flex":
                masks.append(compile_block_mask(spec, queries=queries, keys_end=group.horizon, valid=valid))
            elif padded:
                masks.append(compile_mask(spec, queries=queries, keys_end=group.horizon, valid=valid))
            else:
                masks.append(unpadded_mask(spec, queries, group.horizon, str(valid.device)))
            if isinstance(masks[-1], Tensor):
                masks[-1] = additive_mask(masks[-1], dtype)
        return masks


class LayerEnd(nn.Module):
    """The end of one layer: the identity on the experts' outputs ``[(B, n_run, W)]`` (no parameters).

    The model calls it after every layer, so that hooks on a layer as a whole (FSDP2's group of a layer's
    expert modules, see :meth:`MixtureOfTransformers.layer_units`) see where the layer ends and what it
    returns.
    """

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return xs


def compute_dtype(param: Tensor) -> torch.dtype:
    """The dtype the model's tensors come in: ``param``'s, or under autocast (on its device type, for
    float32 weights) autocast's, e.g. bf16 hidden states, keys and values from fp32 weights."""
    device = param.device.type
    if param.dtype == torch.float32 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return param.dtype


def _cat(tensors: list[Tensor], dim: int = 2) -> Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=dim)


def _groups_read(
    groups: tuple[_QueryGroup, ...], masks: list[object | None], last: bool
) -> list[tuple[_QueryGroup, object | None]]:
    """The query groups (with their masks) whose attention a layer needs: all of them, but in the last
    layer not those made only of keys/values-only experts' rows (nothing reads their output)."""
    return [(group, mask) for group, mask in zip(groups, masks) if group.read_in_last_layer or not last]


@dataclass(frozen=True)
class _ChunkLayout:
    plan: ChunkPlan
    runs: tuple[_Run, ...]
    groups: tuple[_QueryGroup, ...]


@dataclass(frozen=True, eq=False)
class DownstreamCall:
    """A read-only call against a cache, checked and laid out once by
    :meth:`MixtureOfTransformers.prepare_downstream` (run it with
    :meth:`MixtureOfTransformers.run_downstream`).

    Attributes:
        spec: the spec of the cache.
        shapes: per given segment ``(name, (B, n, W), dtype, device)`` of the tokens it takes.
        layout: where those segments go (internal).
        cached: per layer the cached keys and values ``(B, Hkv, start, D)`` (None: nothing cached).
        cos, sin: rotary tables of the call's slots (None without rotary embeddings).
        masks: one attention mask per query group of the call.
    """

    spec: AttentionSpec
    shapes: tuple[tuple[str, tuple[int, ...], torch.dtype, torch.device], ...]
    layout: _ChunkLayout
    cached: tuple[tuple[Tensor, ...], tuple[Tensor, ...]] | None
    cos: Tensor | None
    sin: Tensor | None
    masks: tuple[object | None, ...]


def _outputs(runs: tuple[_Run, ...], hidden: list[Tensor | None]) -> dict[str, Tensor]:
    """``{segment: (B, n, W)}`` of the runs' hidden states (none for keys/values-only experts)."""
    outputs: dict[str, Tensor] = {}
    for run, x in zip(runs, hidden):
        if x is None:  # a keys/values-only expert
            continue
        pieces = x.split(list(run.lengths), dim=1) if len(run.names) > 1 else (x,)
        outputs.update(zip(run.names, pieces))
    return outputs


@functools.lru_cache(maxsize=256)
def _chunk_layout(
    spec: AttentionSpec,
    lengths: tuple[tuple[str, int], ...],
    start: int,
    kv_only_experts: frozenset[str] = frozenset(),
) -> _ChunkLayout:
    """Where the given segments go, which expert runs and which query groups they form (memoised);
    ``kv_only_experts`` name the keys/values-only experts (their rows are not read in the last layer)."""
    plan = plan_chunk(spec, dict(lengths), start)
    check_cut(spec, plan.end)
    runs: list[_Run] = []
    for piece in plan.pieces:  # consecutive pieces of one expert share its matmuls
        if runs and runs[-1].expert == piece.expert:
            last = runs.pop()
            runs.append(_Run(last.expert, (*last.names, piece.name), (*last.lengths, piece.length)))
        else:
            runs.append(_Run(piece.expert, (piece.name,), (piece.length,)))
    groups: list[_QueryGroup] = []
    row = 0
    for piece in plan.pieces:  # consecutive pieces with the same key horizon share one attention call
        horizon = min(_horizon(spec, piece.name), plan.end)
        read = piece.expert not in kv_only_experts
        if groups and groups[-1].horizon == horizon:
            last = groups.pop()
            read = read or last.read_in_last_layer
            groups.append(_QueryGroup(last.row_start, row + piece.length, horizon, read))
        else:
            groups.append(_QueryGroup(row, row + piece.length, horizon, read))
        row += piece.length
    return _ChunkLayout(plan, tuple(runs), tuple(groups))
