"""Every public entry of mot refuses bad input with a MoTError that names the argument, and changes nothing.

Each case is ``(entry, call, error class, a fragment the message must contain)``; the fragment is the name
of the argument (or key) at fault. Cases of ``extend`` additionally check that a refused call leaves the
KVCache's keys, values and length as they were.
"""

from __future__ import annotations

import pytest
import torch

from mot import (
    ArgumentTypeError,
    AttentionSpec,
    Blockwise,
    ConfigError,
    Expert,
    ExpertConfig,
    GeGLU,
    KVCache,
    MixtureOfTransformers,
    MoTConfig,
    MoTError,
    RMSNorm,
    Segment,
    SpecError,
    WeightImportError,
    additive_mask,
    check_rows_see_a_key,
    compile_block_mask,
    compile_mask,
    find_gemma_prefix,
    gemma_config_to_mot,
    load_gemma_expert,
    load_pi0,
    positions_from_valid,
    reference_mask,
    render_mask,
    rotary_cos_sin,
    rotary_table,
    token_valid,
)

NAN, INF = float("nan"), float("inf")
EXPERTS = {"a": ExpertConfig(8, 16), "b": ExpertConfig(6, 8)}
BASE = {"n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "head_dim": 4, "experts": EXPERTS}
SPEC = AttentionSpec((Segment("p", "a", 3), Segment("s", "b", 2, "causal")), sees={"s": ["p"]})
SPEC_DICT = SPEC.to_dict()
GEMMA = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}


def _model(**changes) -> MixtureOfTransformers:
    torch.manual_seed(0)
    return MixtureOfTransformers(MoTConfig(**{**BASE, **changes})).eval()


MODEL = _model()
X = {"p": torch.randn(2, 3, 8), "s": torch.randn(2, 2, 6)}
with torch.no_grad():
    CACHE = MODEL.prefill({"p": X["p"]}, SPEC)
STATE = {name: t.clone() for name, t in MODEL.experts["a"].state_dict().items()}


def _foreign_cache(batch: int = 2, **changes) -> KVCache:
    with torch.no_grad():
        return _model(**changes).prefill({"p": X["p"][:batch]}, SPEC)


def _with(tensor: torch.Tensor, value: float) -> torch.Tensor:
    bad = tensor.clone()
    bad.view(-1)[1] = value
    return bad


def _fill(shape: tuple[int, ...], value: float) -> torch.Tensor:
    return torch.full(shape, value)


def _state(**changes) -> dict[str, object]:
    return {**STATE, **changes}


CASES = [
    # --- ExpertConfig / MoTConfig and their dicts ---------------------------------------------------------
    ("ExpertConfig", lambda: ExpertConfig("8", 16), ConfigError, "width"),
    ("ExpertConfig", lambda: ExpertConfig(0, 16), ConfigError, "width"),
    ("ExpertConfig", lambda: ExpertConfig(8, -1), ConfigError, "mlp_width"),
    ("ExpertConfig", lambda: ExpertConfig(8, 16, NAN), ConfigError, "norm_eps"),
    ("ExpertConfig", lambda: ExpertConfig(8, 16, INF), ConfigError, "norm_eps"),
    ("ExpertConfig", lambda: ExpertConfig(8, 16, True), ConfigError, "norm_eps"),
    ("ExpertConfig.from_dict", lambda: ExpertConfig.from_dict({"width": 8}), ConfigError, "mlp_width"),
    ("ExpertConfig.from_dict", lambda: ExpertConfig.from_dict({"width": 8, "x": 1}), ConfigError, "'x'"),
    ("ExpertConfig.from_dict", lambda: ExpertConfig.from_dict([8, 16]), ConfigError, "ExpertConfig"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "n_layers": 0}), ConfigError, "n_layers"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "n_heads": 2.0}), ConfigError, "n_heads"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "n_kv_heads": 3}), ConfigError, "n_kv_heads"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "head_dim": -2}), ConfigError, "head_dim"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "rope_base": NAN}), ConfigError, "rope_base"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "rope_base": INF}), ConfigError, "rope_base"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "rope_base": "1e4"}), ConfigError, "rope_base"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "rope_base": None}), ConfigError, "rope_base"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "use_rotary": 1}), ConfigError, "use_rotary"),
    (
        "MoTConfig",
        lambda: MoTConfig(**{**BASE, "attention_backend": "xla"}),
        ConfigError,
        "attention_backend",
    ),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "experts": [EXPERTS["a"]]}), ConfigError, "experts"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "experts": {}}), ConfigError, "experts"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "experts": {"a": 8}}), ConfigError, "experts['a']"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "experts": {"a": {"width": 8}}}), ConfigError, "mlp_width"),
    ("MoTConfig", lambda: MoTConfig(**{**BASE, "experts": {"": EXPERTS["a"]}}), ConfigError, "experts"),
    ("MoTConfig.from_dict", lambda: MoTConfig.from_dict({"n_layers": 1}), ConfigError, "n_heads"),
    ("MoTConfig.from_dict", lambda: MoTConfig.from_dict({**BASE, "depth": 2}), ConfigError, "'depth'"),
    ("MoTConfig.from_dict", lambda: MoTConfig.from_dict(None), ConfigError, "MoTConfig"),
    ("MoTConfig.from_dict", lambda: MoTConfig.from_dict([1, 2]), ConfigError, "MoTConfig"),
    ("MoTConfig.from_dict", lambda: MoTConfig.from_dict({**BASE, "n_layers": "1"}), ConfigError, "n_layers"),
    (
        "MoTConfig.from_dict",
        lambda: MoTConfig.from_dict({**BASE, "experts": {"a": {"width": 8, "mlp_width": 8, "eps": 1}}}),
        ConfigError,
        "'eps'",
    ),
    # --- Blockwise / Segment / AttentionSpec and its dicts ------------------------------------------------
    ("Blockwise", lambda: Blockwise(None), SpecError, "sizes"),
    ("Blockwise", lambda: Blockwise(3), SpecError, "sizes"),
    ("Blockwise", lambda: Blockwise(()), SpecError, "sizes"),
    ("Blockwise", lambda: Blockwise((1, 0)), SpecError, "sizes"),
    ("Blockwise", lambda: Blockwise((1, 2.0)), SpecError, "sizes"),
    ("Segment", lambda: Segment("", "a", 2), SpecError, "name"),
    ("Segment", lambda: Segment("x", None, 2), SpecError, "expert"),
    ("Segment", lambda: Segment("x", "a", 0), SpecError, "length"),
    ("Segment", lambda: Segment("x", "a", True), SpecError, "length"),
    ("Segment", lambda: Segment("x", "a", 2, "bidirectional"), SpecError, "rule"),
    ("Segment", lambda: Segment("x", "a", 2, Blockwise((1, 2))), SpecError, "Blockwise"),
    ("AttentionSpec", lambda: AttentionSpec(None), SpecError, "segments"),
    ("AttentionSpec", lambda: AttentionSpec(Segment("x", "a", 2)), SpecError, "segments"),
    ("AttentionSpec", lambda: AttentionSpec(()), SpecError, "segments"),
    ("AttentionSpec", lambda: AttentionSpec(("x",)), SpecError, "segments"),
    ("AttentionSpec", lambda: AttentionSpec(SPEC.segments, sees=["s"]), SpecError, "sees"),
    ("AttentionSpec", lambda: AttentionSpec(SPEC.segments, sees=None), SpecError, "sees"),
    ("AttentionSpec", lambda: AttentionSpec(SPEC.segments, sees={"s": 3}), SpecError, "sees['s']"),
    ("AttentionSpec", lambda: AttentionSpec(SPEC.segments, sees={"s": "p"}), SpecError, "sees['s']"),
    ("AttentionSpec", lambda: AttentionSpec(SPEC.segments, sees={"zz": ["p"]}), SpecError, "'zz'"),
    ("AttentionSpec", lambda: AttentionSpec(SPEC.segments, sees={"s": ["zz"]}), SpecError, "'zz'"),
    ("AttentionSpec", lambda: AttentionSpec(SPEC.segments * 2), SpecError, "duplicate"),
    ("AttentionSpec.from_dict", lambda: AttentionSpec.from_dict(None), SpecError, "data"),
    ("AttentionSpec.from_dict", lambda: AttentionSpec.from_dict([]), SpecError, "data"),
    ("AttentionSpec.from_dict", lambda: AttentionSpec.from_dict({}), SpecError, "segments"),
    ("AttentionSpec.from_dict", lambda: AttentionSpec.from_dict({**SPEC_DICT, "x": 1}), SpecError, "'x'"),
    ("AttentionSpec.from_dict", lambda: AttentionSpec.from_dict({"segments": 3}), SpecError, "segments"),
    (
        "AttentionSpec.from_dict",
        lambda: AttentionSpec.from_dict({"segments": {"p": 1}}),
        SpecError,
        "segments",
    ),
    ("AttentionSpec.from_dict", lambda: AttentionSpec.from_dict({"segments": [3]}), SpecError, "segments[0]"),
    (
        "AttentionSpec.from_dict",
        lambda: AttentionSpec.from_dict({"segments": [{"expert": "a", "length": 2}]}),
        SpecError,
        "name",
    ),
    (
        "AttentionSpec.from_dict",
        lambda: AttentionSpec.from_dict({"segments": [{"name": "p", "expert": "a", "length": 2, "size": 1}]}),
        SpecError,
        "'size'",
    ),
    (
        "AttentionSpec.from_dict",
        lambda: AttentionSpec.from_dict({"segments": [{"name": "p", "expert": "a", "length": "2"}]}),
        SpecError,
        "length",
    ),
    (
        "AttentionSpec.from_dict",
        lambda: AttentionSpec.from_dict(
            {"segments": [{"name": "p", "expert": "a", "length": 2, "rule": {"blockwise": 2}}]}
        ),
        SpecError,
        "sizes",
    ),
    (
        "AttentionSpec.from_dict",
        lambda: AttentionSpec.from_dict(
            {"segments": [{"name": "p", "expert": "a", "length": 2, "rule": {"causal": 1}}]}
        ),
        SpecError,
        "rule",
    ),
    (
        "AttentionSpec.from_dict",
        lambda: AttentionSpec.from_dict({**SPEC_DICT, "sees": ["p"]}),
        SpecError,
        "sees",
    ),
    ("AttentionSpec.segment", lambda: SPEC.segment("zz"), SpecError, "'zz'"),
    ("AttentionSpec.start", lambda: SPEC.start("zz"), SpecError, "'zz'"),
    ("AttentionSpec.index", lambda: SPEC.index("zz"), SpecError, "'zz'"),
    ("AttentionSpec.may_see", lambda: SPEC.may_see("zz", "p"), SpecError, "'zz'"),
    ("AttentionSpec.may_see", lambda: SPEC.may_see("s", "zz"), SpecError, "'zz'"),
    ("AttentionSpec.causal_lm", lambda: AttentionSpec.causal_lm(0), SpecError, "length"),
    ("AttentionSpec.pi0", lambda: AttentionSpec.pi0(4, 0), SpecError, "chunk"),
    ("AttentionSpec.pi0", lambda: AttentionSpec.pi0(-1, 2), SpecError, "prefix_length"),
    ("AttentionSpec.next_scale", lambda: AttentionSpec.next_scale(1, 3), SpecError, "scale_sizes"),
    ("AttentionSpec.next_scale", lambda: AttentionSpec.next_scale(1, ()), SpecError, "scale_sizes"),
    ("AttentionSpec.next_scale", lambda: AttentionSpec.next_scale(0, (1,)), SpecError, "condition_length"),
    # --- masks and layout ----------------------------------------------------------------------------------
    ("compile_mask", lambda: compile_mask(None), ArgumentTypeError, "spec"),
    ("compile_mask", lambda: compile_mask(SPEC, batch_size=0), SpecError, "batch_size"),
    ("compile_mask", lambda: compile_mask(SPEC, batch_size=-1), SpecError, "batch_size"),
    ("compile_mask", lambda: compile_mask(SPEC, batch_size="2"), SpecError, "batch_size"),
    ("compile_mask", lambda: compile_mask(SPEC, queries="ab"), SpecError, "queries"),
    ("compile_mask", lambda: compile_mask(SPEC, queries=(0, 1, 2)), SpecError, "queries"),
    ("compile_mask", lambda: compile_mask(SPEC, queries=(3, 1)), SpecError, "queries"),
    ("compile_mask", lambda: compile_mask(SPEC, keys_end="a"), SpecError, "keys_end"),
    ("compile_mask", lambda: compile_mask(SPEC, keys_end=99), SpecError, "keys_end"),
    ("compile_mask", lambda: compile_mask(SPEC, {"zz": [1]}), SpecError, "'zz'"),
    ("compile_mask", lambda: compile_mask(SPEC, [1]), SpecError, "valid_lengths"),
    ("compile_mask", lambda: compile_mask(SPEC, {"p": [1.5]}), SpecError, "valid_lengths['p']"),
    ("compile_mask", lambda: compile_mask(SPEC, {"p": torch.tensor([NAN])}), SpecError, "valid_lengths['p']"),
    ("compile_mask", lambda: compile_mask(SPEC, {"p": "x"}), SpecError, "valid_lengths['p']"),
    ("compile_mask", lambda: compile_mask(SPEC, {"p": [4]}), SpecError, "valid_lengths['p']"),
    ("compile_mask", lambda: compile_mask(SPEC, {"p": [-1]}), SpecError, "valid_lengths['p']"),
    ("compile_mask", lambda: compile_mask(SPEC, {"p": [1, 2]}), SpecError, "valid_lengths['p']"),
    ("compile_mask", lambda: compile_mask(SPEC, {"p": [[1]]}), SpecError, "valid_lengths['p']"),
    ("compile_mask", lambda: compile_mask(SPEC, valid=torch.ones(1, 5)), SpecError, "valid"),
    ("compile_mask", lambda: compile_mask(SPEC, valid=torch.ones(5, dtype=torch.bool)), SpecError, "valid"),
    (
        "compile_mask",
        lambda: compile_mask(SPEC, valid=torch.ones(1, 2, dtype=torch.bool)),
        SpecError,
        "valid",
    ),
    ("compile_mask", lambda: compile_mask(SPEC, valid=[[True] * 5]), ArgumentTypeError, "valid"),
    ("compile_mask", lambda: compile_mask(SPEC, device="nope"), SpecError, "device"),
    ("compile_mask", lambda: compile_mask(SPEC, device=3), ArgumentTypeError, "device"),
    ("compile_block_mask", lambda: compile_block_mask("spec"), ArgumentTypeError, "spec"),
    ("compile_block_mask", lambda: compile_block_mask(SPEC, block_size=0), SpecError, "block_size"),
    ("compile_block_mask", lambda: compile_block_mask(SPEC, block_size="a"), SpecError, "block_size"),
    ("compile_block_mask", lambda: compile_block_mask(SPEC, valid=torch.ones(1, 5)), SpecError, "valid"),
    ("compile_block_mask", lambda: compile_block_mask(SPEC, {"s": [3]}), SpecError, "valid_lengths['s']"),
    ("reference_mask", lambda: reference_mask(None), ArgumentTypeError, "spec"),
    ("reference_mask", lambda: reference_mask(SPEC, {"zz": [1]}), SpecError, "'zz'"),
    (
        "reference_mask",
        lambda: reference_mask(SPEC, {"p": [1]}, batch_size=2),
        SpecError,
        "valid_lengths['p']",
    ),
    ("reference_mask", lambda: reference_mask(SPEC, batch_size=0), SpecError, "batch_size"),
    ("reference_mask", lambda: reference_mask(SPEC, {"p": [9]}), SpecError, "valid_lengths['p']"),
    ("reference_mask", lambda: reference_mask(SPEC, {"p": [-1]}), SpecError, "valid_lengths['p']"),
    ("reference_mask", lambda: reference_mask(SPEC, {"p": [1.5]}), SpecError, "valid_lengths['p']"),
    ("render_mask", lambda: render_mask([[True]]), ArgumentTypeError, "mask"),
    ("render_mask", lambda: render_mask(torch.ones(2, 2)), SpecError, "mask"),
    ("render_mask", lambda: render_mask(torch.ones(1, 2, 2, dtype=torch.bool)), SpecError, "mask"),
    ("render_mask", lambda: render_mask(torch.ones(2, 2, dtype=torch.bool), SPEC), SpecError, "mask"),
    ("render_mask", lambda: render_mask(torch.ones(5, 5, dtype=torch.bool), "x"), ArgumentTypeError, "spec"),
    ("check_rows_see_a_key", lambda: check_rows_see_a_key([[True]]), ArgumentTypeError, "mask"),
    ("check_rows_see_a_key", lambda: check_rows_see_a_key(torch.ones(1, 2, 2)), SpecError, "mask"),
    (
        "check_rows_see_a_key",
        lambda: check_rows_see_a_key(torch.ones(2, 2, dtype=torch.bool)),
        SpecError,
        "mask",
    ),
    (
        "check_rows_see_a_key",
        lambda: check_rows_see_a_key(torch.ones(1, 2, 2, dtype=torch.bool), query_start=-1),
        SpecError,
        "query_start",
    ),
    (
        "check_rows_see_a_key",
        lambda: check_rows_see_a_key(torch.ones(1, 2, 2, dtype=torch.bool), SPEC, 4),
        SpecError,
        "query_start",
    ),
    ("token_valid", lambda: token_valid(SPEC, None, -1), SpecError, "batch_size"),
    ("token_valid", lambda: token_valid(SPEC, None, 1, end=99), SpecError, "end"),
    ("token_valid", lambda: token_valid(SPEC, None, 1, end=-1), SpecError, "end"),
    ("token_valid", lambda: token_valid(SPEC, {"zz": [1]}, 1), SpecError, "'zz'"),
    ("positions_from_valid", lambda: positions_from_valid([[True]]), ArgumentTypeError, "valid"),
    (
        "positions_from_valid",
        lambda: positions_from_valid(torch.ones(3, dtype=torch.bool)),
        SpecError,
        "valid",
    ),
    ("positions_from_valid", lambda: positions_from_valid(torch.ones(2, 3)), SpecError, "valid"),
    (
        "positions_from_valid",
        lambda: positions_from_valid(torch.ones(2, 3, dtype=torch.bool), torch.tensor([1.0, 2.0])),
        SpecError,
        "offset",
    ),
    (
        "positions_from_valid",
        lambda: positions_from_valid(torch.ones(2, 3, dtype=torch.bool), 1.5),
        ArgumentTypeError,
        "offset",
    ),
    # --- building blocks -----------------------------------------------------------------------------------
    ("additive_mask", lambda: additive_mask([[True]], torch.float32), ArgumentTypeError, "mask"),
    ("additive_mask", lambda: additive_mask(torch.ones(2, 2), torch.float32), SpecError, "mask"),
    (
        "additive_mask",
        lambda: additive_mask(torch.ones(2, 2, dtype=torch.bool), torch.int64),
        SpecError,
        "dtype",
    ),
    ("rotary_table", lambda: rotary_table(-1, 4), SpecError, "length"),
    ("rotary_table", lambda: rotary_table(3, 0), SpecError, "head_dim"),
    ("rotary_table", lambda: rotary_table(3, 4, NAN), SpecError, "base"),
    ("rotary_cos_sin", lambda: rotary_cos_sin(torch.ones(1, 3), 4), SpecError, "positions"),
    ("rotary_cos_sin", lambda: rotary_cos_sin([[0, 1]], 4), ArgumentTypeError, "positions"),
    ("RMSNorm", lambda: RMSNorm(0), SpecError, "width"),
    ("RMSNorm", lambda: RMSNorm(4, INF), SpecError, "eps"),
    ("GeGLU", lambda: GeGLU(-1, 3), SpecError, "width"),
    ("GeGLU", lambda: GeGLU(3, 0), SpecError, "mlp_width"),
    ("Expert", lambda: Expert({"width": 8}, MODEL.config), ArgumentTypeError, "expert"),
    ("Expert", lambda: Expert(EXPERTS["a"], BASE), ArgumentTypeError, "config"),
    # --- the model -----------------------------------------------------------------------------------------
    ("MixtureOfTransformers", lambda: MixtureOfTransformers(BASE), ArgumentTypeError, "config"),
    ("forward", lambda: MODEL({"p": _with(X["p"], NAN)}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL({"p": X["p"], "s": _with(X["s"], INF)}, SPEC), SpecError, "inputs['s']"),
    ("forward", lambda: MODEL({"p": _with(X["p"], -INF)}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL([X["p"]], SPEC), SpecError, "inputs"),
    ("forward", lambda: MODEL({}, SPEC), SpecError, "inputs"),
    ("forward", lambda: MODEL({"zz": X["p"]}, SPEC), SpecError, "'zz'"),
    ("forward", lambda: MODEL({1: X["p"]}, SPEC), SpecError, "inputs"),
    ("forward", lambda: MODEL({"p": X["p"].numpy()}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL({"p": X["p"][0]}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL({"p": X["p"][..., :6]}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL({"p": X["p"].long()}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL({"p": X["p"].double()}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL({"p": X["p"].to("meta")}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL({"p": X["p"][:0]}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL({"p": X["p"][:, :0]}, SPEC), SpecError, "inputs['p']"),
    ("forward", lambda: MODEL({"p": X["p"], "s": X["s"][:1]}, SPEC), SpecError, "inputs['s']"),
    ("forward", lambda: MODEL({"p": X["p"][:, :2]}, SPEC), SpecError, "slot 2"),
    ("forward", lambda: MODEL({"s": X["s"]}, SPEC), SpecError, "'s'"),
    ("forward", lambda: MODEL(X, None), ArgumentTypeError, "spec"),
    ("forward", lambda: MODEL(X, AttentionSpec.causal_lm(3, expert="zz")), SpecError, "spec"),
    ("forward", lambda: MODEL(X, SPEC, valid_lengths=[3]), SpecError, "valid_lengths"),
    ("forward", lambda: MODEL(X, SPEC, valid_lengths={"zz": [3, 3]}), SpecError, "'zz'"),
    ("forward", lambda: MODEL(X, SPEC, valid_lengths={"p": [1.5, 2]}), SpecError, "valid_lengths['p']"),
    ("forward", lambda: MODEL(X, SPEC, valid_lengths={"p": "ab"}), SpecError, "valid_lengths['p']"),
    ("forward", lambda: MODEL(X, SPEC, valid_lengths={"p": [3]}), SpecError, "valid_lengths['p']"),
    ("forward", lambda: MODEL(X, SPEC, valid_lengths={"p": [4, 3]}), SpecError, "valid_lengths['p']"),
    ("forward", lambda: MODEL(X, SPEC, valid_lengths={"p": [0, -1]}), SpecError, "valid_lengths['p']"),
    ("forward", lambda: MODEL(X, SPEC, valid_lengths={"p": [[3], [3]]}), SpecError, "valid_lengths['p']"),
    (
        "forward",
        lambda: MODEL({"p": X["p"]}, SPEC, valid_lengths={"s": [1, 1]}),
        SpecError,
        "valid_lengths['s']",
    ),
    ("prefill", lambda: MODEL.prefill({"p": _with(X["p"], NAN)}, SPEC), SpecError, "inputs['p']"),
    ("prefill", lambda: MODEL.prefill({"p": _fill((2, 3, 8), INF)}, SPEC), SpecError, "inputs['p']"),
    ("prefill", lambda: MODEL.prefill({"p": X["p"]}, "spec"), ArgumentTypeError, "spec"),
    ("prefill", lambda: MODEL.prefill({"p": X["p"]}, SPEC, {"p": [3, 9]}), SpecError, "valid_lengths['p']"),
    ("extend", lambda: MODEL.extend({"s": X["s"]}, SPEC, None), ArgumentTypeError, "cache"),
    ("extend", lambda: MODEL.extend({"s": X["s"]}, SPEC, CACHE, append="yes"), ArgumentTypeError, "append"),
    ("KVCache", lambda: KVCache(None), ArgumentTypeError, "spec"),
    ("KVCache", lambda: KVCache(SPEC, keys="ab"), ArgumentTypeError, "keys"),
    ("KVCache", lambda: KVCache(SPEC, keys=list(CACHE.keys)), SpecError, "values"),
    ("KVCache", lambda: KVCache(SPEC, list(CACHE.keys), list(CACHE.values)), SpecError, "valid"),
    (
        "KVCache",
        lambda: KVCache(SPEC, list(CACHE.keys), list(CACHE.values), CACHE.valid.float()),
        SpecError,
        "valid",
    ),
    (
        "KVCache",
        lambda: KVCache(SPEC, list(CACHE.keys), list(CACHE.values), CACHE.valid[:1]),
        SpecError,
        "keys[0]",
    ),
    ("KVCache", lambda: KVCache(SPEC, valid_lengths={"zz": [1]}), SpecError, "'zz'"),
    ("KVCache.to", lambda: CACHE.to("nope"), SpecError, "device"),
    # --- weights -------------------------------------------------------------------------------------------
    ("gemma_config_to_mot", lambda: gemma_config_to_mot(None), ArgumentTypeError, "config"),
    (
        "gemma_config_to_mot",
        lambda: gemma_config_to_mot({"hidden_size": 8}),
        ConfigError,
        "intermediate_size",
    ),
    (
        "gemma_config_to_mot",
        lambda: gemma_config_to_mot({**GEMMA, "hidden_size": "8"}),
        ConfigError,
        "hidden_size",
    ),
    (
        "gemma_config_to_mot",
        lambda: gemma_config_to_mot({**GEMMA, "hidden_size": 8.5}),
        ConfigError,
        "hidden_size",
    ),
    (
        "gemma_config_to_mot",
        lambda: gemma_config_to_mot({**GEMMA, "num_attention_heads": 0}),
        ConfigError,
        "num_attention_heads",
    ),
    (
        "gemma_config_to_mot",
        lambda: gemma_config_to_mot({**GEMMA, "rope_theta": "a"}),
        ConfigError,
        "rope_theta",
    ),
    (
        "gemma_config_to_mot",
        lambda: gemma_config_to_mot({**GEMMA, "rope_theta": NAN}),
        ConfigError,
        "rope_theta",
    ),
    (
        "gemma_config_to_mot",
        lambda: gemma_config_to_mot({**GEMMA, "rms_norm_eps": -1}),
        ConfigError,
        "rms_norm_eps",
    ),
    (
        "gemma_config_to_mot",
        lambda: gemma_config_to_mot({**GEMMA, "hidden_act": "relu"}),
        ConfigError,
        "hidden_act",
    ),
    ("gemma_config_to_mot", lambda: gemma_config_to_mot(GEMMA, expert=3), ConfigError, "experts"),
    ("find_gemma_prefix", lambda: find_gemma_prefix(None), ArgumentTypeError, "state_dict"),
    ("find_gemma_prefix", lambda: find_gemma_prefix({1: torch.ones(1)}), WeightImportError, "state_dict"),
    ("find_gemma_prefix", lambda: find_gemma_prefix({}), WeightImportError, "state_dict"),
    ("find_gemma_prefix", lambda: find_gemma_prefix(STATE, "layers."), ArgumentTypeError, "candidates"),
    ("load_gemma_expert", lambda: load_gemma_expert(None, "a", STATE), ArgumentTypeError, "model"),
    ("load_gemma_expert", lambda: load_gemma_expert(MODEL, 3, STATE), WeightImportError, "expert"),
    ("load_gemma_expert", lambda: load_gemma_expert(MODEL, "zz", STATE), WeightImportError, "expert"),
    ("load_gemma_expert", lambda: load_gemma_expert(MODEL, "a", [1]), ArgumentTypeError, "state_dict"),
    (
        "load_gemma_expert",
        lambda: load_gemma_expert(MODEL, "a", STATE, prefix=3),
        ArgumentTypeError,
        "prefix",
    ),
    ("load_gemma_expert", lambda: load_gemma_expert(MODEL, "b", STATE), WeightImportError, "norm.weight"),
    (
        "load_gemma_expert",
        lambda: load_gemma_expert(MODEL, "a", _state(**{"norm.weight": STATE["norm.weight"].numpy()})),
        WeightImportError,
        "norm.weight",
    ),
    (
        "load_gemma_expert",
        lambda: load_gemma_expert(MODEL, "a", _state(**{"norm.weight": _fill((8,), NAN)})),
        WeightImportError,
        "norm.weight",
    ),
    (
        "load_gemma_expert",
        lambda: load_gemma_expert(MODEL, "a", _state(**{"norm.weight": _fill((8,), INF)})),
        WeightImportError,
        "norm.weight",
    ),
    (
        "load_gemma_expert",
        lambda: load_gemma_expert(MODEL, "a", _state(**{"norm.weight": torch.ones(8, dtype=torch.long)})),
        WeightImportError,
        "norm.weight",
    ),
    (
        "load_gemma_expert",
        lambda: load_gemma_expert(MODEL, "a", _state(**{"norm.weight": torch.ones(9)})),
        WeightImportError,
        "norm.weight",
    ),
    (
        "load_gemma_expert",
        lambda: load_gemma_expert(MODEL, "a", {k: v for k, v in STATE.items() if k != "norm.weight"}),
        WeightImportError,
        "norm.weight",
    ),
    ("load_pi0", lambda: load_pi0(MODEL, None), ArgumentTypeError, "state_dict"),
    ("load_pi0", lambda: load_pi0(None, {}), ArgumentTypeError, "model"),
    ("load_pi0", lambda: load_pi0(MODEL, {}, "a", "a"), WeightImportError, "suffix_expert"),
    ("load_pi0", lambda: load_pi0(MODEL, STATE, "a", "b"), WeightImportError, "state_dict"),
]


@pytest.mark.parametrize(
    ("entry", "call", "error", "fragment"), CASES, ids=[f"{i}-{case[0]}" for i, case in enumerate(CASES)]
)
def test_bad_input_raises_a_mot_error_naming_the_argument(entry, call, error, fragment):
    with torch.no_grad(), pytest.raises(error) as caught:
        call()
    assert isinstance(caught.value, MoTError)
    assert fragment in str(caught.value), f"{entry}: {caught.value}"


# --- extend: refused calls leave the cache unchanged ------------------------------------------------------
FOREIGN = {
    "other depth": lambda: _foreign_cache(n_layers=2),
    "other kv heads": lambda: _foreign_cache(n_kv_heads=2),
    "other head size": lambda: _foreign_cache(head_dim=8),
    "other batch": lambda: _foreign_cache(batch=1),
    "other dtype": lambda: KVCache(
        SPEC, [k.double() for k in CACHE.keys], [v.double() for v in CACHE.values], CACHE.valid
    ),
    "other spec": lambda: _model().prefill({"p": X["p"]}, AttentionSpec(SPEC.segments)),
}


@pytest.mark.parametrize("append", [False, True])
@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_extend_refuses_a_cache_of_another_model_and_leaves_it_unchanged(kind, append):
    with torch.no_grad():
        cache = FOREIGN[kind]()
    before = (list(cache.keys), list(cache.values), cache.length)
    with torch.no_grad(), pytest.raises(SpecError, match=r"cache|spec|batch size") as caught:
        MODEL.extend({"s": X["s"]}, SPEC, cache, append=append)
    assert isinstance(caught.value, MoTError)
    assert all(a is b for a, b in zip(cache.keys, before[0]))
    assert len(cache.keys) == len(before[0])
    assert all(a is b for a, b in zip(cache.values, before[1]))
    assert cache.length == before[2]


BAD_EXTEND = {
    "nan": ({"s": _with(X["s"], NAN)}, None, "inputs['s']"),
    "inf": ({"s": _with(X["s"], INF)}, None, "inputs['s']"),
    "wrong width": ({"s": X["s"][..., :4]}, None, "inputs['s']"),
    "wrong dtype": ({"s": X["s"].double()}, None, "inputs['s']"),
    "wrong batch": ({"s": X["s"][:1]}, None, "batch size"),
    "unknown segment": ({"zz": X["s"]}, None, "'zz'"),
    "cached segment": ({"p": X["p"]}, None, "'p'"),
    "too long": ({"s": torch.randn(2, 3, 6)}, None, "inputs['s']"),
    "valid lengths out of range": ({"s": X["s"]}, {"s": [3, 1]}, "valid_lengths['s']"),
    "valid lengths of a cached segment": ({"s": X["s"]}, {"p": [1, 1]}, "valid_lengths['p']"),
}


@pytest.mark.parametrize("kind", sorted(BAD_EXTEND))
def test_refused_append_leaves_the_cache_unchanged(kind):
    inputs, valid_lengths, fragment = BAD_EXTEND[kind]
    cache = CACHE.clone()
    keys = [k.clone() for k in cache.keys]
    values = [v.clone() for v in cache.values]
    valid, length = cache.valid.clone(), cache.length
    with torch.no_grad(), pytest.raises(SpecError) as caught:
        MODEL.extend(inputs, SPEC, cache, valid_lengths=valid_lengths, append=True)
    assert fragment in str(caught.value)
    assert cache.length == length
    assert torch.equal(cache.valid, valid)
    assert all(torch.equal(a, b) for a, b in zip(cache.keys, keys))
    assert len(cache.keys) == len(keys)
    assert all(torch.equal(a, b) for a, b in zip(cache.values, values))


def test_read_only_extend_skips_the_finite_check_and_leaves_the_cache_unchanged():
    # Documented: append=False runs once per ODE step; a finite check would add a device sync per step.
    cache = CACHE.clone()
    with torch.no_grad():
        out = MODEL.extend({"s": _with(X["s"], NAN)}, SPEC, cache)
    assert not bool(torch.isfinite(out["s"]).all())
    assert cache.length == CACHE.length
    assert all(a is b for a, b in zip(cache.keys, CACHE.keys))


def test_refused_weight_import_leaves_the_expert_unchanged():
    before = {k: v.clone() for k, v in MODEL.experts["a"].state_dict().items()}
    bad = _state(**{"layers.0.mlp.up_proj.weight": _fill(STATE["layers.0.mlp.up_proj.weight"].shape, NAN)})
    with pytest.raises(WeightImportError, match="up_proj"):
        load_gemma_expert(MODEL, "a", {k: v + 1 for k, v in bad.items()})
    after = MODEL.experts["a"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_every_mot_error_is_also_the_builtin_a_caller_catches():
    assert issubclass(ConfigError, ValueError)
    assert issubclass(SpecError, ValueError)
    assert issubclass(ArgumentTypeError, TypeError)
    assert issubclass(WeightImportError, KeyError)
    assert all(
        issubclass(e, MoTError) for e in (ConfigError, SpecError, ArgumentTypeError, WeightImportError)
    )
