"""Two ways to run downstream segments against upstream ones: with a KV cache, or by recomputing.

Both expose the same two calls, so inference has one code path and the benchmark can compare them:

- ``append(inputs, valid_lengths)``: run the next upstream segment(s) (or the next scale of ``gen``) and
  keep them; returns their hidden states (none for the segments of keys/values-only experts);
- ``downstream(inputs)``: run a downstream segment (``act``) against everything kept, without keeping it
  (called once per ODE step).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mot import AttentionSpec, DownstreamCall, KVCache, MixtureOfTransformers

__all__ = ["CachedRunner", "RecomputingRunner"]


class CachedRunner:
    """Upstream keys/values are computed once (``KVCache``); each call runs only the new tokens."""

    def __init__(self, trunk: MixtureOfTransformers, spec: AttentionSpec) -> None:
        self.trunk, self.spec = trunk, spec
        self.cache = KVCache(spec)

    def append(
        self, inputs: Mapping[str, torch.Tensor], valid_lengths: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        return self.trunk.extend(inputs, self.spec, self.cache, valid_lengths, append=True)

    def downstream(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.trunk.extend(inputs, self.spec, self.cache, append=False)

    def prepare_downstream(self, inputs: Mapping[str, torch.Tensor]) -> DownstreamCall:
        """``downstream`` checked and laid out once for tokens shaped like ``inputs`` (run it with
        ``trunk.run_downstream``: the same floats, without the per-call checks and layout)."""
        return self.trunk.prepare_downstream(inputs, self.spec, self.cache)


class RecomputingRunner:
    """No cache: every call re-runs the whole sequence so far (the baseline the cache is measured against)."""

    def __init__(self, trunk: MixtureOfTransformers, spec: AttentionSpec) -> None:
        self.trunk, self.spec = trunk, spec
        self.inputs: dict[str, torch.Tensor] = {}
        self.valid_lengths: dict[str, torch.Tensor] = {}

    def append(
        self, inputs: Mapping[str, torch.Tensor], valid_lengths: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        for name, x in inputs.items():
            self.inputs[name] = torch.cat([self.inputs[name], x], dim=1) if name in self.inputs else x
        self.valid_lengths.update(valid_lengths or {})
        out = self.trunk(self.inputs, self.spec, self.valid_lengths)
        # segments of keys/values-only experts have no outputs
        return {name: out[name][:, -x.shape[1] :] for name, x in inputs.items() if name in out}

    def downstream(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.trunk({**self.inputs, **inputs}, self.spec, self.valid_lengths)
        return {name: out[name] for name in inputs}
