"""Every public entry of var_foresight refuses bad input with the argument (or file) named, before any state
changes: wrong types, shapes and dtypes, out-of-range values, NaN and inf, unknown and missing keys, and
truncated or foreign files."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import var_foresight as vf

NAN, INF = float("nan"), float("inf")
TINY = vf.tiny_vqvae_config()


def _images(value: float | None = None, shape=(1, 3, 32, 32), dtype=torch.float32) -> torch.Tensor:
    x = torch.zeros(shape, dtype=dtype)
    if value is not None:
        x.view(-1)[0] = value
    return x


def _indices(n: int = 10, high: int | None = None, batch: int = 1) -> list[torch.Tensor]:
    out = [torch.zeros(batch, h * w, dtype=torch.long) for h, w in TINY.scales[:n]]
    if high is not None:
        out[-1][0, 0] = high
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> SimpleNamespace:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bad")
    vae = vf.VQVAE(TINY).eval()
    predictor = vf.NextScalePredictor(vf.NextScalePredictorConfig.tiny(depth=1)).eval()
    history = vf.TemporalHistoryEncoder(vf.HistoryEncoderConfig(z_channels=8, width=16, max_frames=3)).eval()
    vae_weights = vf.save_vqvae(vae, root / "vae")
    pred_weights = vf.save_predictor(predictor, root / "gen")
    files = {}
    data = vae_weights.read_bytes()
    (root / "truncated").mkdir()
    files["truncated"] = root / "truncated" / "model.safetensors"
    files["truncated"].write_bytes(data[: len(data) // 2])
    (root / "truncated" / "config.json").write_text((root / "vae" / "config.json").read_text())
    files["header_only"] = root / "header_only.safetensors"
    files["header_only"].write_bytes(data[:7])
    files["text_st"] = root / "notes.safetensors"
    files["text_st"].write_text("these are not tensors\n")
    files["text_pth"] = root / "notes.pth"
    files["text_pth"].write_text("these are not tensors\n")
    files["empty"] = root / "empty.safetensors"
    files["empty"].write_bytes(b"")
    files["pickle"] = root / "plain.pkl"
    files["pickle"].write_bytes(pickle.dumps({"encoder.conv_in.weight": [1.0, 2.0]}))
    files["pickle_code"] = root / "code.pth"
    torch.save({"encoder.conv_in.weight": torch.zeros(1), "hook": Path("x")}, files["pickle_code"])
    files["int_keys"] = root / "int_keys.pth"
    torch.save({1: torch.zeros(1)}, files["int_keys"])
    files["foreign_st"] = root / "foreign.safetensors"
    save_file({"model.layers.0.weight": torch.zeros(3)}, str(files["foreign_st"]))
    files["nan_weights"] = root / "nan.safetensors"
    state = {k: v.clone() for k, v in vae.state_dict().items()}
    state["encoder.conv_in.weight"][0, 0, 0, 0] = NAN
    save_file(state, str(files["nan_weights"]))
    (root / "badjson").mkdir()
    save_file(dict(vae.state_dict()), str(root / "badjson" / "model.safetensors"))
    (root / "badjson" / "config.json").write_text("{not json")
    files["badjson"] = root / "badjson" / "model.safetensors"
    (root / "unknownkey").mkdir()
    save_file(dict(vae.state_dict()), str(root / "unknownkey" / "model.safetensors"))
    (root / "unknownkey" / "config.json").write_text('{"chanels": 3}')
    files["unknownkey"] = root / "unknownkey" / "model.safetensors"
    (root / "gen_badcfg").mkdir()
    save_file(dict(predictor.state_dict()), str(root / "gen_badcfg" / "model.safetensors"))
    (root / "gen_badcfg" / "config.json").write_text('{"width": 64}')
    (root / "gen_listcfg").mkdir()
    save_file(dict(predictor.state_dict()), str(root / "gen_listcfg" / "model.safetensors"))
    (root / "gen_listcfg" / "config.json").write_text("[1, 2]")
    (root / "gen_truncated").mkdir()
    (root / "gen_truncated" / "model.safetensors").write_bytes(pred_weights.read_bytes()[:100])
    (root / "gen_truncated" / "config.json").write_text((root / "gen" / "config.json").read_text())
    (root / "gen_foreign").mkdir()
    (root / "gen_foreign" / "model.safetensors").write_bytes(data)
    (root / "gen_foreign" / "config.json").write_text((root / "gen" / "config.json").read_text())
    return SimpleNamespace(
        root=root,
        vae=vae,
        q=vae.quantize,
        predictor=predictor,
        history=history,
        files=files,
        vae_weights=vae_weights,
        pred_weights=pred_weights,
    )


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[SimpleNamespace], Any]
    error: type[BaseException]
    match: str  # a regex that names the argument, the key or the file


def _logits_fn(n_rows: int | None = None, value: float = 0.0, kind: str = "ok"):
    def fn(scale, inputs):
        rows = n_rows or (1 if inputs is None else inputs.shape[0])
        n = TINY.schedule.tokens_per_scale[scale]
        if kind == "list":
            return [[0.0]]
        if kind == "int":
            return torch.zeros(rows, n, 512, dtype=torch.long)
        return torch.full((rows, n, 512), value)

    return fn


def _vqvae_cfg(**changes) -> dict:
    return {**TINY.to_dict(), **changes}


def _pred_cfg(**changes) -> dict:
    return {**vf.NextScalePredictorConfig.tiny().to_dict(), **changes}


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


#: The kinds of file every loader must refuse as unreadable (see the file-making fixture).
UNREADABLE_FILES = (
    "truncated",
    "header_only",
    "text_st",
    "text_pth",
    "empty",
    "pickle",
    "pickle_code",
    "int_keys",
)


def _f(shape=(1, 32, 16, 16), value=None) -> torch.Tensor:
    x = torch.zeros(shape)
    if value is not None:
        x.view(-1)[0] = value
    return x


F = "files"
CASES = [
    # ---- files: read_state_dict / load_vqvae / load_predictor ----------------------------------------------
    *(
        Case(f"{entry}-{name}", call, vf.CheckpointError, name_match)
        for name in UNREADABLE_FILES
        for entry, call, name_match in (
            ("read_state_dict", lambda e, n=name: vf.read_state_dict(e.files[n]), None),
            ("load_vqvae", lambda e, n=name: vf.load_vqvae(e.files[n], TINY), None),
            ("load_predictor", lambda e, n=name: vf.load_predictor(e.files[n], e.predictor.config), None),
        )
    ),
    Case(
        "load_vqvae-foreign-safetensors",
        lambda e: vf.load_vqvae(e.files["foreign_st"], TINY),
        vf.CheckpointError,
        "foreign",
    ),
    Case(
        "load_vqvae-predictor-file",
        lambda e: vf.load_vqvae(e.pred_weights, TINY),
        vf.CheckpointError,
        "foreign",
    ),
    Case(
        "load_predictor-vqvae-file",
        lambda e: vf.load_predictor(e.root / "gen_foreign"),
        vf.CheckpointError,
        "gen_foreign",
    ),
    Case(
        "load_predictor-truncated-dir",
        lambda e: vf.load_predictor(e.root / "gen_truncated"),
        vf.CheckpointError,
        "gen_truncated",
    ),
    Case(
        "load_vqvae-nan-weights",
        lambda e: vf.load_vqvae(e.files["nan_weights"], TINY),
        vf.CheckpointError,
        r"nan\.safetensors.*encoder\.conv_in\.weight: expected finite",
    ),
    Case(
        "load_vqvae-nan-mapping",
        lambda e: vf.load_vqvae({k: v * NAN for k, v in e.vae.state_dict().items()}, TINY),
        vf.CheckpointError,
        "expected finite",
    ),
    Case(
        "load_vqvae-mapping-of-lists",
        lambda e: vf.load_vqvae({"encoder.conv_in.weight": [1.0]}, TINY),
        vf.CheckpointError,
        "state_dict: expected a mapping of str names to tensors",
    ),
    Case(
        "load_vqvae-bad-config-json",
        lambda e: vf.load_vqvae(e.files["badjson"]),
        vf.CheckpointError,
        r"badjson/config\.json",
    ),
    Case(
        "load_vqvae-config-json-unknown-key",
        lambda e: vf.load_vqvae(e.files["unknownkey"]),
        vf.CheckpointError,
        r"unknownkey/config\.json.*unknown key",
    ),
    Case(
        "load_predictor-config-json-missing-keys",
        lambda e: vf.load_predictor(e.root / "gen_badcfg"),
        vf.CheckpointError,
        r"gen_badcfg/config\.json.*missing key",
    ),
    Case(
        "load_predictor-config-json-not-object",
        lambda e: vf.load_predictor(e.root / "gen_listcfg"),
        vf.CheckpointError,
        r"gen_listcfg/config\.json",
    ),
    Case(
        "load_predictor-no-config",
        lambda e: vf.load_predictor(e.files["text_st"]),
        FileNotFoundError,
        "config",
    ),
    Case(
        "read_state_dict-missing",
        lambda e: vf.read_state_dict(e.root / "nope.pth"),
        FileNotFoundError,
        "path",
    ),
    Case("read_state_dict-int", lambda e: vf.read_state_dict(3), TypeError, "path"),
    Case("load_vqvae-int-source", lambda e: vf.load_vqvae(3), TypeError, "source"),
    Case("load_vqvae-config-type", lambda e: vf.load_vqvae(e.vae_weights, {"ch": 32}), TypeError, "config"),
    Case(
        "load_predictor-config-type", lambda e: vf.load_predictor(e.pred_weights, TINY), TypeError, "config"
    ),
    Case("save_vqvae-wrong-model", lambda e: vf.save_vqvae(e.predictor, e.root / "x"), TypeError, "model"),
    Case("save_predictor-wrong-model", lambda e: vf.save_predictor(e.vae, e.root / "x"), TypeError, "model"),
    Case(
        "save_vqvae-directory-is-a-file",
        lambda e: vf.save_vqvae(e.vae, e.files["text_st"]),
        NotADirectoryError,
        "directory",
    ),
    # ---- configs -------------------------------------------------------------------------------------------
    Case(
        "VQVAEConfig.from_dict-unknown",
        lambda e: vf.VQVAEConfig.from_dict(_vqvae_cfg(chanels=3)),
        KeyError,
        "chanels",
    ),
    Case(
        "VQVAEConfig.from_dict-missing",
        lambda e: vf.VQVAEConfig.from_dict(_without(_vqvae_cfg(), "ch")),
        KeyError,
        r"missing key.*'ch'",
    ),
    Case(
        "VQVAEConfig.from_dict-not-mapping",
        lambda e: vf.VQVAEConfig.from_dict([1, 2]),
        TypeError,
        "VQVAEConfig",
    ),
    Case(
        "VQVAEConfig.from_dict-str-int",
        lambda e: vf.VQVAEConfig.from_dict(_vqvae_cfg(ch="32")),
        TypeError,
        "ch",
    ),
    Case(
        "VQVAEConfig.from_dict-scales-int",
        lambda e: vf.VQVAEConfig.from_dict(_vqvae_cfg(scales=5)),
        TypeError,
        "scales",
    ),
    Case("VQVAEConfig-float-ch", lambda e: vf.VQVAEConfig(ch=32.5), TypeError, "ch"),
    Case("VQVAEConfig-bool-vocab", lambda e: vf.VQVAEConfig(vocab_size=True), TypeError, "vocab_size"),
    Case("VQVAEConfig-zero-z", lambda e: vf.VQVAEConfig(z_channels=0), ValueError, "z_channels"),
    Case("VQVAEConfig-ch_mult-float", lambda e: vf.VQVAEConfig(ch_mult=(1, 1.7)), TypeError, r"ch_mult\[1\]"),
    Case("VQVAEConfig-ch_mult-int", lambda e: vf.VQVAEConfig(ch_mult=2), TypeError, "ch_mult"),
    Case("VQVAEConfig-ch_mult-empty", lambda e: vf.VQVAEConfig(ch_mult=()), ValueError, "ch_mult"),
    Case("VQVAEConfig-beta-nan", lambda e: vf.VQVAEConfig(beta=NAN), ValueError, "beta"),
    Case("VQVAEConfig-dropout-str", lambda e: vf.VQVAEConfig(dropout="0.1"), TypeError, "dropout"),
    Case("VQVAEConfig-phi_ratio-inf", lambda e: vf.VQVAEConfig(phi_ratio=INF), ValueError, "phi_ratio"),
    Case("VQVAEConfig-scales-shrink", lambda e: vf.VQVAEConfig(scales=(4, 2)), ValueError, "scales"),
    Case("VQVAEConfig-scales-zero", lambda e: vf.VQVAEConfig(scales=(0, 16)), ValueError, r"scales\[0\]"),
    Case(
        "VQVAEConfig-scales-bool-pair",
        lambda e: vf.VQVAEConfig(scales=((True, 1), (16, 16))),
        TypeError,
        r"scales\[0\]",
    ),
    Case("VQVAEConfig-replace-unknown", lambda e: TINY.replace(chanels=3), KeyError, "chanels"),
    Case(
        "VQVAEConfig.load_json-missing",
        lambda e: vf.VQVAEConfig.load_json(e.root / "none.json"),
        FileNotFoundError,
        "path",
    ),
    Case(
        "VQVAEConfig.load_json-text",
        lambda e: vf.VQVAEConfig.load_json(e.files["text_pth"]),
        vf.CheckpointError,
        r"notes\.pth",
    ),
    Case("vqvae_config-unknown", lambda e: vf.vqvae_config("huge"), KeyError, "preset"),
    Case("vqvae_config-list", lambda e: vf.vqvae_config(["tiny"]), KeyError, "preset"),
    Case(
        "PredictorConfig.from_dict-unknown",
        lambda e: vf.NextScalePredictorConfig.from_dict(_pred_cfg(widht=3)),
        KeyError,
        "widht",
    ),
    Case(
        "PredictorConfig.from_dict-missing",
        lambda e: vf.NextScalePredictorConfig.from_dict(_without(_pred_cfg(), "depth")),
        KeyError,
        "depth",
    ),
    Case(
        "PredictorConfig.from_dict-str",
        lambda e: vf.NextScalePredictorConfig.from_dict(_pred_cfg(width="64")),
        TypeError,
        "width",
    ),
    Case(
        "PredictorConfig-rotary-int",
        lambda e: vf.NextScalePredictorConfig.tiny(rotary=1),
        TypeError,
        "rotary",
    ),
    Case(
        "PredictorConfig-dropout-nan",
        lambda e: vf.NextScalePredictorConfig.tiny(condition_dropout=NAN),
        ValueError,
        "condition_dropout",
    ),
    Case(
        "PredictorConfig-depth-zero", lambda e: vf.NextScalePredictorConfig.tiny(depth=0), ValueError, "depth"
    ),
    Case(
        "HistoryEncoderConfig-grid-float",
        lambda e: vf.HistoryEncoderConfig(grid=(4, 2.5)),
        TypeError,
        r"grid\[1\]",
    ),
    Case("HistoryEncoderConfig-grid-int", lambda e: vf.HistoryEncoderConfig(grid=4), TypeError, "grid"),
    Case(
        "HistoryEncoderConfig-frames-zero",
        lambda e: vf.HistoryEncoderConfig(max_frames=0),
        ValueError,
        "max_frames",
    ),
    Case(
        "SamplingConfig-temperature-nan",
        lambda e: vf.SamplingConfig(temperature=NAN),
        ValueError,
        "temperature",
    ),
    Case(
        "SamplingConfig-temperature-inf",
        lambda e: vf.SamplingConfig(temperature=INF),
        ValueError,
        "temperature",
    ),
    Case(
        "SamplingConfig-temperature-str",
        lambda e: vf.SamplingConfig(temperature="1"),
        TypeError,
        "temperature",
    ),
    Case("SamplingConfig-top_k-negative", lambda e: vf.SamplingConfig(top_k=-1), ValueError, "top_k"),
    Case("SamplingConfig-top_k-float", lambda e: vf.SamplingConfig(top_k=2.5), TypeError, "top_k"),
    Case("SamplingConfig-top_p-zero", lambda e: vf.SamplingConfig(top_p=0.0), ValueError, "top_p"),
    Case("SamplingConfig-top_p-above-one", lambda e: vf.SamplingConfig(top_p=1.5), ValueError, "top_p"),
    Case("SamplingConfig-top_p-nan", lambda e: vf.SamplingConfig(top_p=NAN), ValueError, "top_p"),
    Case("SamplingConfig-cfg-nan", lambda e: vf.SamplingConfig(cfg=NAN), ValueError, "cfg"),
    Case(
        "SamplingConfig-num_scales-zero", lambda e: vf.SamplingConfig(num_scales=0), ValueError, "num_scales"
    ),
    Case(
        "SamplingConfig-num_scales-float",
        lambda e: vf.SamplingConfig(num_scales=2.0),
        TypeError,
        "num_scales",
    ),
    Case(
        "TokenizerTrainingConfig-weight-nan",
        lambda e: vf.TokenizerTrainingConfig(quantizer_weight=NAN),
        ValueError,
        "quantizer_weight",
    ),
    Case(
        "TokenizerTrainingConfig-restart-float",
        lambda e: vf.TokenizerTrainingConfig(restart_every=1.5),
        TypeError,
        "restart_every",
    ),
    Case(
        "TokenizerTrainingConfig-dead-zero",
        lambda e: vf.TokenizerTrainingConfig(dead_fraction=0),
        ValueError,
        "dead_fraction",
    ),
    # ---- scale schedules -----------------------------------------------------------------------------------
    Case("ScaleSchedule-ints", lambda e: vf.ScaleSchedule((1, 2)), TypeError, r"scales\[0\]"),
    Case("ScaleSchedule-empty", lambda e: vf.ScaleSchedule(()), ValueError, "scales"),
    Case("ScaleSchedule.from_sides-int", lambda e: vf.ScaleSchedule.from_sides(5), TypeError, "scales"),
    Case("ScaleSchedule.from_sides-str", lambda e: vf.ScaleSchedule.from_sides("123"), TypeError, "scales"),
    Case(
        "ScaleSchedule.from_sides-negative",
        lambda e: vf.ScaleSchedule.from_sides([1, -2]),
        ValueError,
        r"scales\[1\]",
    ),
    Case("ScaleSchedule.prefix-float", lambda e: TINY.schedule.prefix(2.5), TypeError, "num_scales"),
    Case("ScaleSchedule.prefix-too-many", lambda e: TINY.schedule.prefix(11), ValueError, "num_scales"),
    Case("ScaleSchedule.level_ids-zero", lambda e: TINY.schedule.level_ids(0), ValueError, "num_scales"),
    Case("ScaleSchedule.level_ids-too-many", lambda e: TINY.schedule.level_ids(11), ValueError, "num_scales"),
    Case("phi_table-zero", lambda e: vf.phi_table(0), ValueError, "num_scales"),
    Case("phi_table-float", lambda e: vf.phi_table(2.5), TypeError, "num_scales"),
    Case("phi_table-num_phi-zero", lambda e: vf.phi_table(10, 0), ValueError, "num_phi"),
    # ---- the VQ-VAE ----------------------------------------------------------------------------------------
    Case("VQVAE-config-dict", lambda e: vf.VQVAE({"ch": 32}), TypeError, "config"),
    Case("Encoder-config-none", lambda e: vf.Encoder(None), TypeError, "config"),
    *(
        Case(
            f"VQVAE.{m}-{cid}",
            lambda e, m=m, x=x: getattr(e.vae, m)(x() if callable(x) else x),
            err,
            "images",
        )
        for m in ("encode", "encode_indices", "encode_latent", "forward")
        for cid, x, err in (
            ("list", [[0.0]], TypeError),
            ("nan", lambda: _images(NAN), ValueError),
            ("inf", lambda: _images(-INF), ValueError),
            ("above-one", lambda: _images(1.5), ValueError),
            ("below-minus-one", lambda: _images(-1.01), ValueError),
            ("float64", lambda: _images(dtype=torch.float64), TypeError),
            ("uint8", lambda: _images(dtype=torch.uint8), TypeError),
            ("3d", lambda: _images(shape=(3, 32, 32)), ValueError),
            ("4-channels", lambda: _images(shape=(1, 4, 32, 32)), ValueError),
            ("odd-size", lambda: _images(shape=(1, 3, 31, 32)), ValueError),
            ("empty-batch", lambda: _images(shape=(0, 3, 32, 32)), ValueError),
        )
    ),
    Case(
        "VQVAE.encode-wrong-image-size",
        lambda e: e.vae.encode(_images(shape=(1, 3, 64, 64))),
        ValueError,
        "last scale",
    ),
    Case(
        "VQVAE.encode-scales-mismatch",
        lambda e: e.vae.encode(_images(), scales=(1, 2, 8)),
        ValueError,
        "last scale",
    ),
    Case("VQVAE.encode-scales-garbage", lambda e: e.vae.encode(_images(), scales="abc"), TypeError, "scales"),
    Case("Encoder.forward-nan", lambda e: e.vae.encoder(_images(NAN)), ValueError, "image"),
    Case("Decoder.forward-nan", lambda e: e.vae.decoder(_f(value=NAN)), ValueError, "latent"),
    Case("Decoder.forward-channels", lambda e: e.vae.decoder(_f((1, 8, 16, 16))), ValueError, "latent"),
    Case("VQVAE.decode_fhat-nan", lambda e: e.vae.decode_fhat(_f(value=NAN)), ValueError, "f_hat"),
    Case(
        "VQVAE.decode_fhat-int",
        lambda e: e.vae.decode_fhat(torch.zeros(1, 32, 16, 16, dtype=torch.long)),
        TypeError,
        "f_hat",
    ),
    Case("VQVAE.decode_fhat-empty", lambda e: e.vae.decode_fhat(_f((1, 32, 0, 16))), ValueError, "f_hat"),
    Case("VQVAE.decode_fhat-numpy", lambda e: e.vae.decode_fhat(_f().numpy()), TypeError, "f_hat"),
    Case(
        "VQVAE.decode_indices-above-vocab",
        lambda e: e.vae.decode_indices(_indices(high=512)),
        ValueError,
        r"indices\[9\].*vocabulary",
    ),
    Case(
        "VQVAE.decode_indices-negative",
        lambda e: e.vae.decode_indices(_indices(3, high=-1)),
        ValueError,
        r"indices\[2\]",
    ),
    Case(
        "VQVAE.decode_indices-float",
        lambda e: e.vae.decode_indices([torch.zeros(1, 1)]),
        TypeError,
        r"indices\[0\]",
    ),
    Case(
        "VQVAE.decode_indices-tensor",
        lambda e: e.vae.decode_indices(torch.zeros(1, 1, dtype=torch.long)),
        TypeError,
        "indices",
    ),
    Case(
        "VQVAE.decode_indices-too-many",
        lambda e: e.vae.decode_indices(_indices() + _indices(1)),
        ValueError,
        "indices",
    ),
    Case("VQVAE.decode_indices-none", lambda e: e.vae.decode_indices([]), ValueError, "indices"),
    Case(
        "VQVAE.decode_indices-batch-mismatch",
        lambda e: e.vae.decode_indices([*_indices(1), *_indices(2, batch=2)[1:]]),
        ValueError,
        r"indices\[1\].*batch",
    ),
    Case(
        "VQVAE.indices_to_fhat-list-items", lambda e: e.vae.indices_to_fhat([[0]]), TypeError, r"indices\[0\]"
    ),
    # ---- the quantizer and the codebook --------------------------------------------------------------------
    Case("Quantizer-config-none", lambda e: vf.MultiScaleResidualQuantizer(None), TypeError, "config"),
    Case("Quantizer.encode-nan", lambda e: e.q.encode(_f(value=NAN)), ValueError, "f"),
    Case(
        "Quantizer.encode-int",
        lambda e: e.q.encode(torch.zeros(1, 32, 16, 16, dtype=torch.long)),
        TypeError,
        "f",
    ),
    Case("Quantizer.forward-inf", lambda e: e.q(_f(value=INF)), ValueError, "f"),
    Case(
        "Quantizer.teacher_forcing_inputs-above-vocab",
        lambda e: e.q.teacher_forcing_inputs(_indices(4, high=10**6)),
        ValueError,
        r"indices\[3\]",
    ),
    Case(
        "Quantizer.next_scale_input-scale",
        lambda e: e.q.next_scale_input(10, _f(), _indices(1)[0]),
        ValueError,
        "scale",
    ),
    Case(
        "Quantizer.next_scale_input-fhat-shape",
        lambda e: e.q.next_scale_input(0, _f((1, 32, 8, 8)), _indices(1)[0]),
        ValueError,
        "f_hat",
    ),
    Case(
        "Quantizer.next_scale_input-fhat-type",
        lambda e: e.q.next_scale_input(0, None, _indices(1)[0]),
        TypeError,
        "f_hat",
    ),
    Case(
        "Quantizer.scale_contribution-above-vocab",
        lambda e: e.q.scale_contribution(_indices(1, high=512)[0], 0),
        ValueError,
        r"indices\[0\]",
    ),
    Case(
        "Quantizer.scale_contribution-schedule",
        lambda e: e.q.scale_contribution(_indices(1)[0], 0, (1, 2)),
        TypeError,
        "schedule",
    ),
    Case(
        "Quantizer.nearest_codes-nan", lambda e: e.q.nearest_codes(torch.full((2, 32), NAN)), ValueError, "z"
    ),
    Case("Quantizer.nearest_codes-width", lambda e: e.q.nearest_codes(torch.zeros(2, 8)), ValueError, "z"),
    Case("Quantizer.empty_fhat-zero", lambda e: e.q.empty_fhat(0), ValueError, "batch"),
    Case(
        "direct_lookup-width",
        lambda e: vf.direct_lookup(torch.zeros(3, 4), torch.zeros(5, 8)),
        ValueError,
        "z",
    ),
    Case(
        "direct_lookup-nan",
        lambda e: vf.direct_lookup(torch.full((3, 8), NAN), torch.zeros(5, 8)),
        ValueError,
        "z",
    ),
    Case(
        "direct_lookup-codebook-inf",
        lambda e: vf.direct_lookup(torch.zeros(3, 8), torch.full((5, 8), INF)),
        ValueError,
        "codebook",
    ),
    Case(
        "direct_lookup-empty-codebook",
        lambda e: vf.direct_lookup(torch.zeros(3, 8), torch.zeros(0, 8)),
        ValueError,
        "codebook",
    ),
    Case(
        "direct_lookup-int",
        lambda e: vf.direct_lookup(torch.zeros(3, 8, dtype=torch.long), torch.zeros(5, 8)),
        TypeError,
        "z",
    ),
    Case("VectorQuantizeLookup-zero", lambda e: vf.VectorQuantizeLookup(0, 8), ValueError, "vocab_size"),
    Case(
        "VectorQuantizeLookup-codebook-shape",
        lambda e: vf.VectorQuantizeLookup(5, 8)(torch.zeros(3, 8), torch.zeros(6, 8)),
        ValueError,
        "codebook",
    ),
    Case(
        "VectorQuantizeLookup-nan",
        lambda e: vf.VectorQuantizeLookup(5, 8)(torch.full((3, 8), NAN), torch.zeros(5, 8)),
        ValueError,
        "z",
    ),
    # ---- codebook health -----------------------------------------------------------------------------------
    Case("perplexity_per_scale-1d", lambda e: vf.perplexity_per_scale(torch.zeros(5)), ValueError, "hits"),
    Case(
        "perplexity_per_scale-negative",
        lambda e: vf.perplexity_per_scale(-torch.ones(2, 5)),
        ValueError,
        "hits",
    ),
    Case(
        "perplexity_per_scale-nan",
        lambda e: vf.perplexity_per_scale(torch.full((2, 5), NAN)),
        ValueError,
        "hits",
    ),
    Case("dead_thresholds-batch-zero", lambda e: vf.dead_thresholds(e.q, 0), ValueError, "batch"),
    Case("dead_thresholds-fraction-nan", lambda e: vf.dead_thresholds(e.q, 2, NAN), ValueError, "fraction"),
    Case("dead_thresholds-quantizer", lambda e: vf.dead_thresholds(e.vae, 2), TypeError, "quantizer"),
    Case(
        "codebook_health-hits-shape",
        lambda e: vf.codebook_health(e.q, torch.zeros(10, 7), torch.zeros(10)),
        ValueError,
        "hits",
    ),
    Case(
        "codebook_health-thresholds-shape",
        lambda e: vf.codebook_health(e.q, torch.zeros(10, 512), torch.zeros(3)),
        ValueError,
        "thresholds",
    ),
    Case(
        "restart_dead_codes-residual-nan",
        lambda e: vf.restart_dead_codes(e.q, [torch.full((2, 32), NAN)] * 10, torch.ones(10)),
        ValueError,
        r"residuals\[0\]",
    ),
    Case(
        "restart_dead_codes-residual-empty",
        lambda e: vf.restart_dead_codes(e.q, [torch.zeros(0, 32)] * 10, torch.ones(10)),
        ValueError,
        r"residuals\[0\]",
    ),
    Case(
        "restart_dead_codes-residual-width",
        lambda e: vf.restart_dead_codes(e.q, [torch.zeros(2, 8)] * 10, torch.ones(10)),
        ValueError,
        r"residuals\[0\]",
    ),
    Case(
        "restart_dead_codes-scales",
        lambda e: vf.restart_dead_codes(e.q, [torch.zeros(2, 32)] * 3, torch.ones(10)),
        ValueError,
        "residuals",
    ),
    Case(
        "restart_dead_codes-generator",
        lambda e: vf.restart_dead_codes(e.q, [torch.zeros(2, 32)] * 10, torch.ones(10), 0),
        TypeError,
        "generator",
    ),
    # ---- sampling ------------------------------------------------------------------------------------------
    Case("filter_logits-nan", lambda e: vf.filter_logits(torch.tensor([NAN, 0.0]), 1), ValueError, "logits"),
    Case(
        "filter_logits-top_k-negative", lambda e: vf.filter_logits(torch.zeros(3, 5), -1), ValueError, "top_k"
    ),
    Case(
        "filter_logits-top_p-two", lambda e: vf.filter_logits(torch.zeros(3, 5), 0, 2.0), ValueError, "top_p"
    ),
    Case(
        "filter_logits-int",
        lambda e: vf.filter_logits(torch.zeros(3, 5, dtype=torch.long)),
        TypeError,
        "logits",
    ),
    Case("sample_tokens-nan", lambda e: vf.sample_tokens(torch.full((1, 2, 5), NAN)), ValueError, "logits"),
    Case(
        "sample_tokens-nan-greedy",
        lambda e: vf.sample_tokens(torch.full((1, 2, 5), NAN), temperature=0),
        ValueError,
        "logits",
    ),
    Case(
        "sample_tokens-plus-inf", lambda e: vf.sample_tokens(torch.full((1, 2, 5), INF)), ValueError, "logits"
    ),
    Case(
        "sample_tokens-all-minus-inf",
        lambda e: vf.sample_tokens(torch.full((1, 2, 5), -INF)),
        ValueError,
        "logits",
    ),
    Case(
        "sample_tokens-temperature-negative",
        lambda e: vf.sample_tokens(torch.zeros(1, 2, 5), -1.0),
        ValueError,
        "temperature",
    ),
    Case(
        "sample_tokens-generator",
        lambda e: vf.sample_tokens(torch.zeros(1, 2, 5), generator=1),
        TypeError,
        "generator",
    ),
    Case("sample_tokens-1d", lambda e: vf.sample_tokens(torch.zeros(5)), ValueError, "logits"),
    Case("guidance_weight-scale", lambda e: vf.guidance_weight(10, 10, 1.0), ValueError, "scale"),
    Case("guidance_weight-ramp", lambda e: vf.guidance_weight(0, 10, 1.0, "cosine"), ValueError, "cfg_ramp"),
    Case("guidance_weight-cfg-nan", lambda e: vf.guidance_weight(0, 10, NAN), ValueError, "cfg"),
    Case("sample_next_scales-fn", lambda e: vf.sample_next_scales(None, e.q, 1), TypeError, "logits_fn"),
    Case(
        "sample_next_scales-quantizer",
        lambda e: vf.sample_next_scales(_logits_fn(), e.vae, 1),
        TypeError,
        "quantizer",
    ),
    Case(
        "sample_next_scales-batch-zero",
        lambda e: vf.sample_next_scales(_logits_fn(), e.q, 0),
        ValueError,
        "batch",
    ),
    Case(
        "sample_next_scales-batch-float",
        lambda e: vf.sample_next_scales(_logits_fn(), e.q, 1.0),
        TypeError,
        "batch",
    ),
    Case(
        "sample_next_scales-config",
        lambda e: vf.sample_next_scales(_logits_fn(), e.q, 1, {"top_k": 1}),
        TypeError,
        "config",
    ),
    Case(
        "sample_next_scales-too-many",
        lambda e: vf.sample_next_scales(_logits_fn(), e.q, 1, vf.SamplingConfig(num_scales=11)),
        ValueError,
        "num_scales",
    ),
    Case(
        "sample_next_scales-logits-shape",
        lambda e: vf.sample_next_scales(_logits_fn(n_rows=3), e.q, 1),
        ValueError,
        "logits_fn",
    ),
    Case(
        "sample_next_scales-logits-list",
        lambda e: vf.sample_next_scales(_logits_fn(kind="list"), e.q, 1),
        TypeError,
        "logits_fn",
    ),
    Case(
        "sample_next_scales-logits-int",
        lambda e: vf.sample_next_scales(_logits_fn(kind="int"), e.q, 1),
        TypeError,
        "logits_fn",
    ),
    # ---- next-scale embedding, head and loss ---------------------------------------------------------------
    Case(
        "NextScaleEmbedding-schedule", lambda e: vf.NextScaleEmbedding((1, 2), 8, 16), TypeError, "schedule"
    ),
    Case(
        "NextScaleEmbedding-width-zero",
        lambda e: vf.NextScaleEmbedding(TINY.schedule, 8, 0),
        ValueError,
        "width",
    ),
    Case(
        "NextScaleEmbedding.forward-nan",
        lambda e: e.predictor.embedding(torch.full((1, 4, 32), NAN), 1, 2),
        ValueError,
        "teacher_inputs",
    ),
    Case(
        "NextScaleEmbedding.forward-batch-zero",
        lambda e: e.predictor.embedding(None, 0, 1),
        ValueError,
        "batch",
    ),
    Case(
        "NextScaleEmbedding.forward-num_scales-float",
        lambda e: e.predictor.embedding(None, 1, 1.0),
        TypeError,
        "num_scales",
    ),
    Case(
        "NextScaleEmbedding.embed_scale-scale",
        lambda e: e.predictor.embedding.embed_scale(10, None, 1),
        ValueError,
        "scale",
    ),
    Case(
        "NextScaleEmbedding.embed_scale-inputs",
        lambda e: e.predictor.embedding.embed_scale(1, torch.zeros(1, 3, 32), 1),
        ValueError,
        "inputs",
    ),
    Case("NextScaleHead-vocab-zero", lambda e: vf.NextScaleHead(16, 0), ValueError, "vocab_size"),
    Case(
        "NextScaleHead.forward-width", lambda e: e.predictor.head(torch.zeros(1, 2, 7)), ValueError, "hidden"
    ),
    Case(
        "next_scale_cross_entropy-nan",
        lambda e: vf.next_scale_cross_entropy(torch.full((1, 5, 512), NAN), _indices(2)),
        ValueError,
        "logits",
    ),
    Case(
        "next_scale_cross_entropy-above-vocab",
        lambda e: vf.next_scale_cross_entropy(torch.zeros(1, 5, 512), _indices(2, high=512)),
        ValueError,
        "indices",
    ),
    Case(
        "next_scale_cross_entropy-float-targets",
        lambda e: vf.next_scale_cross_entropy(torch.zeros(1, 1, 512), [torch.zeros(1, 1)]),
        TypeError,
        r"indices\[0\]",
    ),
    Case(
        "next_scale_cross_entropy-loss_scales-str",
        lambda e: vf.next_scale_cross_entropy(torch.zeros(1, 5, 512), _indices(2), "0"),
        TypeError,
        "loss_scales",
    ),
    Case(
        "next_scale_cross_entropy-batch",
        lambda e: vf.next_scale_cross_entropy(torch.zeros(2, 5, 512), _indices(2)),
        ValueError,
        r"indices\[0\]",
    ),
    # ---- the predictor -------------------------------------------------------------------------------------
    Case("NextScalePredictor-config", lambda e: vf.NextScalePredictor(TINY), TypeError, "config"),
    Case(
        "NextScalePredictor.forward-nan",
        lambda e: e.predictor(torch.full((1, 2, 64), NAN), None, 1),
        ValueError,
        "condition",
    ),
    Case(
        "NextScalePredictor.forward-float64",
        lambda e: e.predictor(torch.zeros(1, 2, 64, dtype=torch.float64), None, 1),
        TypeError,
        "condition",
    ),
    Case(
        "NextScalePredictor.forward-num_scales-zero",
        lambda e: e.predictor(torch.zeros(1, 2, 64), None, 0),
        ValueError,
        "num_scales",
    ),
    Case(
        "NextScalePredictor.forward-num_scales-too-many",
        lambda e: e.predictor(torch.zeros(1, 2, 64), None, 11),
        ValueError,
        "num_scales",
    ),
    Case(
        "NextScalePredictor.forward-empty-condition",
        lambda e: e.predictor(torch.zeros(1, 0, 64), None, 1),
        ValueError,
        "condition",
    ),
    Case(
        "NextScalePredictor.forward-teacher-nan",
        lambda e: e.predictor(torch.zeros(1, 2, 64), torch.full((1, 4, 32), NAN), 2),
        ValueError,
        "teacher_inputs",
    ),
    Case(
        "NextScalePredictor.loss-above-vocab",
        lambda e: e.predictor.loss(torch.zeros(1, 2, 64), _indices(3, high=999), e.q, 3),
        ValueError,
        r"indices\[2\]",
    ),
    Case(
        "NextScalePredictor.loss-quantizer",
        lambda e: e.predictor.loss(torch.zeros(1, 2, 64), _indices(3), e.vae, 3),
        TypeError,
        "quantizer",
    ),
    Case(
        "NextScalePredictor.loss-quantizer-mismatch",
        lambda e: e.predictor.loss(
            torch.zeros(1, 2, 64),
            _indices(3),
            vf.MultiScaleResidualQuantizer(TINY.replace(vocab_size=256)),
            3,
        ),
        ValueError,
        "quantizer",
    ),
    Case(
        "NextScalePredictor.embed_condition-drop",
        lambda e: e.predictor.embed_condition(torch.zeros(2, 1, 64), torch.zeros(2)),
        TypeError,
        "drop",
    ),
    Case(
        "NextScalePredictor.generate-tokenizer",
        lambda e: e.predictor.generate(torch.zeros(1, 1, 64), e.q),
        TypeError,
        "tokenizer",
    ),
    Case(
        "NextScalePredictor.generate-sampling",
        lambda e: e.predictor.generate(torch.zeros(1, 1, 64), e.vae, {"top_k": 3}),
        TypeError,
        "sampling",
    ),
    Case(
        "NextScalePredictor.generate-nan",
        lambda e: e.predictor.generate(torch.full((1, 1, 64), NAN), e.vae),
        ValueError,
        "condition",
    ),
    Case(
        "NextScalePredictor.generate-generator",
        lambda e: e.predictor.generate(torch.zeros(1, 1, 64), e.vae, None, 7),
        TypeError,
        "generator",
    ),
    Case(
        "NextScalePredictor.generate-num_scales",
        lambda e: e.predictor.generate(torch.zeros(1, 1, 64), e.vae, vf.SamplingConfig(num_scales=11)),
        ValueError,
        "num_scales",
    ),
    Case(
        "NextScalePredictor.logits_fn-guided-str",
        lambda e: e.predictor.logits_fn(torch.zeros(1, 1, 64), 2, "yes"),
        TypeError,
        "guided",
    ),
    Case(
        "CachedNextScaleLogits-tokens-width",
        lambda e: vf.CachedNextScaleLogits(e.predictor, torch.zeros(1, 2, 8), 2),
        ValueError,
        "condition_tokens",
    ),
    Case(
        "CachedNextScaleLogits-predictor",
        lambda e: vf.CachedNextScaleLogits(e.vae, torch.zeros(1, 2, 64), 2),
        TypeError,
        "predictor",
    ),
    Case(
        "RecomputedNextScaleLogits-nan",
        lambda e: vf.RecomputedNextScaleLogits(e.predictor, torch.full((1, 2, 64), NAN)),
        ValueError,
        "condition_tokens",
    ),
    # ---- history encoder -----------------------------------------------------------------------------------
    Case(
        "TemporalHistoryEncoder-config",
        lambda e: vf.TemporalHistoryEncoder({"width": 8}),
        TypeError,
        "config",
    ),
    Case("TemporalHistoryEncoder-list", lambda e: e.history([[0.0]]), TypeError, "frames"),
    Case(
        "TemporalHistoryEncoder-nan",
        lambda e: e.history(torch.full((1, 2, 8, 4, 4), NAN)),
        ValueError,
        "frames",
    ),
    Case(
        "TemporalHistoryEncoder-inf-in-padded-frame",
        lambda e: e.history(
            torch.cat([torch.full((1, 1, 8, 4, 4), INF), torch.zeros(1, 1, 8, 4, 4)], 1),
            torch.tensor([[False, True]]),
        ),
        ValueError,
        "frames",
    ),
    Case(
        "TemporalHistoryEncoder-int",
        lambda e: e.history(torch.zeros(1, 2, 8, 4, 4, dtype=torch.long)),
        TypeError,
        "frames",
    ),
    Case(
        "TemporalHistoryEncoder-float64",
        lambda e: e.history(torch.zeros(1, 2, 8, 4, 4, dtype=torch.float64)),
        TypeError,
        "frames",
    ),
    Case(
        "TemporalHistoryEncoder-empty-map",
        lambda e: e.history(torch.zeros(1, 2, 8, 0, 4)),
        ValueError,
        "frames",
    ),
    Case(
        "TemporalHistoryEncoder-too-many",
        lambda e: e.history(torch.zeros(1, 4, 8, 4, 4)),
        ValueError,
        "frames",
    ),
    Case(
        "TemporalHistoryEncoder-no-frames",
        lambda e: e.history(torch.zeros(1, 0, 8, 4, 4)),
        ValueError,
        "frames",
    ),
    Case(
        "TemporalHistoryEncoder-valid-list",
        lambda e: e.history(torch.zeros(1, 2, 8, 4, 4), [[True, True]]),
        TypeError,
        "frame_valid",
    ),
    Case(
        "TemporalHistoryEncoder-valid-int",
        lambda e: e.history(torch.zeros(1, 2, 8, 4, 4), torch.ones(1, 2, dtype=torch.long)),
        ValueError,
        "frame_valid",
    ),
    # ---- metrics -------------------------------------------------------------------------------------------
    Case(
        "psnr-shape-mismatch",
        lambda e: vf.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9)),
        ValueError,
        "prediction",
    ),
    Case("psnr-3d", lambda e: vf.psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)), ValueError, "prediction"),
    Case(
        "psnr-nan",
        lambda e: vf.psnr(torch.full((1, 3, 8, 8), NAN), torch.zeros(1, 3, 8, 8)),
        ValueError,
        "prediction",
    ),
    Case(
        "psnr-target-inf",
        lambda e: vf.psnr(torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), INF)),
        ValueError,
        "target",
    ),
    Case(
        "psnr-uint8",
        lambda e: vf.psnr(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8)),
        TypeError,
        "prediction",
    ),
    Case("psnr-list", lambda e: vf.psnr([0.0], torch.zeros(1, 3, 8, 8)), TypeError, "prediction"),
    Case(
        "psnr-data_range-zero",
        lambda e: vf.psnr(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8), 0.0),
        ValueError,
        "data_range",
    ),
    Case(
        "psnr-empty",
        lambda e: vf.psnr(torch.zeros(1, 3, 0, 8), torch.zeros(1, 3, 0, 8)),
        ValueError,
        "prediction",
    ),
    Case(
        "ssim-window-zero",
        lambda e: vf.ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), window_size=0),
        ValueError,
        "window_size",
    ),
    Case(
        "ssim-sigma-nan",
        lambda e: vf.ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), sigma=NAN),
        ValueError,
        "sigma",
    ),
    Case(
        "ssim-shape-mismatch",
        lambda e: vf.ssim(torch.zeros(2, 3, 8, 8), torch.zeros(1, 3, 8, 8)),
        ValueError,
        "prediction",
    ),
    Case(
        "token_accuracy-shape-mismatch",
        lambda e: vf.per_scale_token_accuracy(_indices(2), _indices(2, batch=2)),
        ValueError,
        r"predicted\[0\]",
    ),
    Case(
        "token_accuracy-more-scales",
        lambda e: vf.per_scale_token_accuracy(_indices(3), _indices(2)),
        ValueError,
        "predicted",
    ),
    Case(
        "token_accuracy-empty",
        lambda e: vf.per_scale_token_accuracy([], _indices(2)),
        ValueError,
        "predicted",
    ),
    Case(
        "token_accuracy-float",
        lambda e: vf.per_scale_token_accuracy([torch.zeros(1, 1)], _indices(1)),
        TypeError,
        r"predicted\[0\]",
    ),
    Case(
        "token_accuracy-tensor",
        lambda e: vf.per_scale_token_accuracy(torch.zeros(1, 1), _indices(1)),
        TypeError,
        "predicted",
    ),
    # ---- tokenizer training --------------------------------------------------------------------------------
    Case(
        "TokenizerTrainer-vqvae",
        lambda e: vf.TokenizerTrainer(e.predictor, torch.optim.SGD(e.vae.parameters())),
        TypeError,
        "vqvae",
    ),
    Case("TokenizerTrainer-optimizer", lambda e: vf.TokenizerTrainer(e.vae, "adam"), TypeError, "optimizer"),
    Case(
        "TokenizerTrainer-config",
        lambda e: vf.TokenizerTrainer(e.vae, torch.optim.SGD(e.vae.parameters()), {"restart_every": 1}),
        TypeError,
        "config",
    ),
    Case(
        "TokenizerTrainer-generator",
        lambda e: vf.TokenizerTrainer(e.vae, torch.optim.SGD(e.vae.parameters()), None, 0),
        TypeError,
        "generator",
    ),
]


def _cases() -> list:
    cases = []
    for case in CASES:
        if case.match is None:  # the file cases: the message names the file
            case = Case(case.id, case.call, case.error, "")
        cases.append(pytest.param(case, id=case.id))
    return cases


FILE_CASE = {
    f"{entry}-{name}": name
    for name in UNREADABLE_FILES
    for entry in ("read_state_dict", "load_vqvae", "load_predictor")
}


@pytest.mark.parametrize("case", _cases())
def test_bad_input_raises_a_clear_error_naming_the_argument(case: Case, env: SimpleNamespace):
    with pytest.raises(case.error) as info:
        case.call(env)
    message = str(info.value.args[0]) if info.value.args else str(info.value)
    if case.id in FILE_CASE:
        assert str(env.files[FILE_CASE[case.id]]) in message, message
    else:
        assert case.match, case.id
        assert re.search(case.match, message), f"{case.id}: {message!r} does not match {case.match!r}"


def test_the_case_count_covers_every_public_entry():
    assert len(CASES) >= 250
    exported = {name for name in vf.__all__ if callable(getattr(vf, name))}
    results = {"CodebookHealth", "Foresight", "QuantizerEncoding", "QuantizerTrainingOutput", "SampledScales"}
    results |= {
        "TokenizerStepReport",
        "NextScaleLogitsFn",
        "CheckpointError",
    }  # results, a protocol, an error
    results |= {"released_vqvae_config", "tiny_vqvae_config"}  # take no arguments
    tried = " ".join(case.id for case in CASES)
    spelled = {
        "per_scale_token_accuracy": "token_accuracy",
        "NextScalePredictorConfig": "PredictorConfig",
        "MultiScaleResidualQuantizer": "Quantizer",
    }
    missing = [n for n in sorted(exported - results) if spelled.get(n, n) not in tried]
    assert missing == []


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["truncated", "text_st", "pickle_code", "nan_weights", "foreign_st"])
def test_a_refused_load_changes_no_model_and_no_file(env: SimpleNamespace, name: str):
    loaded = vf.load_vqvae(env.vae_weights)
    before, listing = _params(loaded), sorted(p.name for p in env.root.rglob("*"))
    data = env.files[name].read_bytes()
    with pytest.raises(vf.CheckpointError, match=re.escape(str(env.files[name]))):
        vf.load_vqvae(env.files[name], TINY)
    assert _same(_params(loaded), before)
    assert env.files[name].read_bytes() == data
    assert sorted(p.name for p in env.root.rglob("*")) == listing


def test_a_refused_training_step_changes_neither_the_model_nor_the_optimizer():
    torch.manual_seed(0)
    vae = vf.VQVAE(TINY)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    trainer = vf.TokenizerTrainer(vae, optimizer)
    before = _params(vae)
    for bad in (_images(NAN), _images(2.0), _images(dtype=torch.float64), _images(shape=(1, 3, 64, 64))):
        with pytest.raises((ValueError, TypeError), match="images"):
            trainer.step(bad)
    assert _same(_params(vae), before)
    assert trainer.steps == 0
    assert optimizer.state == {}
    assert vae.quantize.hit_updates == 0


def test_a_refused_restart_leaves_the_codebook_unchanged(env: SimpleNamespace):
    vae = vf.VQVAE(TINY)
    before = _params(vae)
    bad = [torch.zeros(2, 32)] * 9 + [torch.full((2, 32), NAN)]
    with pytest.raises(ValueError, match=r"residuals\[9\]"):
        vf.restart_dead_codes(vae.quantize, bad, torch.full((10,), 1e9))
    assert _same(_params(vae), before)


def test_a_refused_save_writes_nothing(tmp_path):
    vae = vf.VQVAE(TINY)
    with torch.no_grad():
        vae.quant_conv.weight[0, 0, 0, 0] = INF
    with pytest.raises(ValueError, match=r"quant_conv\.weight"):
        vf.save_vqvae(vae, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refused_logits_calls_keep_their_position(env: SimpleNamespace):
    tokens = env.predictor.embed_condition(torch.zeros(1, 2, 64))
    for fn in (
        vf.RecomputedNextScaleLogits(env.predictor, tokens),
        vf.CachedNextScaleLogits(env.predictor, tokens, 3),
    ):
        fn(0, None)
        with pytest.raises(ValueError, match="inputs"):
            fn(1, torch.zeros(1, 3, 32))
        assert fn.next_scale == 1
        assert fn(1, torch.zeros(1, 4, 32)).shape == (1, 4, 512)


def test_valid_input_still_gives_the_golden_tokens(shared_golden_vqvae, golden):
    indices = shared_golden_vqvae.encode_indices(golden["image"])
    assert all(torch.equal(indices[k], golden[f"indices.{k}"]) for k in range(10))
