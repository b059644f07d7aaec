"""Every public entry of flowmatch refuses bad input at its boundary, with an error that names the argument.

Each case is (call, error class, pattern the message must match); the pattern always contains the argument's
name. Where the entry has state (a head's parameters, a generator, the solver registry), a separate test
checks that a refused call leaves it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import flowmatch as fm

NAN, INF = float("nan"), float("inf")
B, H, D, C, S = 2, 4, 3, 5, 2


def _config(**overrides: object) -> fm.FlowMatchingHeadConfig:
    base = {"action_dim": D, "horizon": H, "context_dim": C, "width": 8, "depth": 1, "heads": 2}
    return fm.FlowMatchingHeadConfig(**{**base, **overrides})


HEAD = fm.FlowMatchingHead(_config()).eval()
STATE_HEAD = fm.FlowMatchingHead(_config(state_dim=S)).eval()
REGRESSOR = fm.MSERegressor(_config(horizon=4, action_dim=2, context_dim=2))
TASK = fm.BimodalChunkTask()
ENCODER, DECODER, STATE_ENCODER = fm.ActionEncoder(D, 8), fm.ActionDecoder(8, D), fm.StateEncoder(S, 8)
BACKBONE = fm.TransformerBackbone(fm.BackboneConfig(width=8, context_dim=C, heads=2, depth=1))
FLOW = fm.GaussianFlow(0.5, 0.8)


def _with(
    value: float, shape: tuple[int, ...] = (B, H, D), where: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Zeros of ``shape`` with ``value`` at ``where`` (default: the first entry)."""
    tensor = torch.zeros(shape)
    tensor[(0,) * len(shape) if where is None else where] = value
    return tensor


def _field(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    return -x


def _noise() -> torch.Tensor:
    return torch.zeros(B, H, D)


def _ctx() -> torch.Tensor:
    return torch.zeros(B, C)


@dataclass
class _Named:
    name: object = "custom"
    order: object = 1
    evaluations_per_step: object = 1

    def step(self, field, x, tau0, tau1):
        return x


CASES = {
    # --- sample -----------------------------------------------------------------------------------------
    "sample/velocity_fn not callable": (lambda: fm.sample(3, _noise()), TypeError, "velocity_fn"),
    "sample/noise not a tensor": (lambda: fm.sample(_field, [0.0]), TypeError, "noise"),
    "sample/noise int dtype": (
        lambda: fm.sample(_field, torch.zeros(2, dtype=torch.long)),
        TypeError,
        "noise",
    ),
    "sample/noise 0-d": (lambda: fm.sample(_field, torch.zeros(())), ValueError, "noise"),
    "sample/noise NaN": (lambda: fm.sample(_field, _with(NAN)), ValueError, "noise must be finite"),
    "sample/noise inf": (lambda: fm.sample(_field, _with(-INF)), ValueError, "noise must be finite"),
    "sample/unknown solver": (lambda: fm.sample(_field, _noise(), solver="rk5"), KeyError, "solver 'rk5'"),
    "sample/solver wrong type": (lambda: fm.sample(_field, _noise(), solver=4), TypeError, "solver"),
    "sample/steps negative": (lambda: fm.sample(_field, _noise(), steps=-3), ValueError, "steps"),
    "sample/steps float": (lambda: fm.sample(_field, _noise(), steps=2.0), TypeError, "steps"),
    "sample/steps bool": (lambda: fm.sample(_field, _noise(), steps=True), TypeError, "steps"),
    "sample/grid NaN": (
        lambda: fm.sample(_field, _noise(), time_grid=torch.tensor([0.0, NAN, 1.0])),
        ValueError,
        "time_grid must be finite",
    ),
    "sample/grid all NaN": (
        lambda: fm.sample(_field, _noise(), time_grid=torch.tensor([NAN, NAN])),
        ValueError,
        "time_grid must be finite",
    ),
    "sample/grid inf": (
        lambda: fm.sample(_field, _noise(), time_grid=torch.tensor([0.0, INF])),
        ValueError,
        "time_grid must be finite",
    ),
    "sample/grid decreasing": (
        lambda: fm.sample(_field, _noise(), time_grid=torch.tensor([1.0, 0.0])),
        ValueError,
        "time_grid must be strictly increasing",
    ),
    "sample/grid outside [0, 1]": (
        lambda: fm.sample(_field, _noise(), time_grid=torch.tensor([-0.5, 1.0])),
        ValueError,
        r"time_grid must lie in \[0, 1\]",
    ),
    "sample/grid 2-D": (
        lambda: fm.sample(_field, _noise(), time_grid=torch.zeros(2, 2)),
        ValueError,
        "time_grid must have shape",
    ),
    "sample/grid int": (
        lambda: fm.sample(_field, _noise(), time_grid=torch.tensor([0, 1])),
        TypeError,
        "time_grid",
    ),
    "sample/grid list": (lambda: fm.sample(_field, _noise(), time_grid=[0.0, 1.0]), TypeError, "time_grid"),
    "sample/rtol NaN": (lambda: fm.sample(_field, _noise(), solver="dopri5", rtol=NAN), ValueError, "rtol"),
    "sample/atol inf": (lambda: fm.sample(_field, _noise(), solver="dopri5", atol=INF), ValueError, "atol"),
    "sample/atol negative": (lambda: fm.sample(_field, _noise(), atol=-1.0), ValueError, "atol"),
    "sample/rtol str": (lambda: fm.sample(_field, _noise(), rtol="1e-5"), TypeError, "rtol"),
    "sample/return_trajectory not bool": (
        lambda: fm.sample(_field, _noise(), return_trajectory="yes"),
        TypeError,
        "return_trajectory",
    ),
    "sample/time_dtype int": (
        lambda: fm.sample(_field, _noise(), time_dtype=torch.int32),
        TypeError,
        "time_dtype",
    ),
    "sample/field returns list": (lambda: fm.sample(lambda x, t: [0.0], _noise()), TypeError, "velocity_fn"),
    "sample/field returns wrong shape": (
        lambda: fm.sample(lambda x, t: x[0], _noise()),
        ValueError,
        "velocity_fn must return the shape",
    ),
    # --- gaussian_noise ---------------------------------------------------------------------------------
    "gaussian_noise/negative shape": (
        lambda: fm.gaussian_noise((2, -1), generator=None),
        ValueError,
        "shape",
    ),
    "gaussian_noise/shape int": (lambda: fm.gaussian_noise(3, generator=None), ValueError, "shape"),
    "gaussian_noise/shape float": (lambda: fm.gaussian_noise((2.5,), generator=None), ValueError, "shape"),
    "gaussian_noise/dtype str": (
        lambda: fm.gaussian_noise((2,), generator=None, dtype="float32"),
        TypeError,
        "dtype",
    ),
    "gaussian_noise/dtype int": (
        lambda: fm.gaussian_noise((2,), generator=None, dtype=torch.int64),
        TypeError,
        "dtype",
    ),
    "gaussian_noise/generator int": (lambda: fm.gaussian_noise((2,), generator=0), TypeError, "generator"),
    # --- time grids -------------------------------------------------------------------------------------
    "uniform_time_grid/steps 0": (lambda: fm.uniform_time_grid(0), ValueError, "steps"),
    "uniform_time_grid/steps negative": (lambda: fm.uniform_time_grid(-4), ValueError, "steps"),
    "uniform_time_grid/steps float": (lambda: fm.uniform_time_grid(4.0), TypeError, "steps"),
    "uniform_time_grid/dtype int": (lambda: fm.uniform_time_grid(4, dtype=torch.int64), TypeError, "dtype"),
    "uniform_time_grid/too many steps for bfloat16": (
        lambda: fm.uniform_time_grid(1000, dtype=torch.bfloat16),
        ValueError,
        "steps=1000",
    ),
    "power_time_grid/exponent NaN": (lambda: fm.power_time_grid(4, NAN), ValueError, "exponent"),
    "power_time_grid/exponent inf": (lambda: fm.power_time_grid(4, INF), ValueError, "exponent"),
    "power_time_grid/exponent 0": (lambda: fm.power_time_grid(4, 0.0), ValueError, "exponent"),
    "power_time_grid/exponent negative": (lambda: fm.power_time_grid(4, -2.0), ValueError, "exponent"),
    "power_time_grid/exponent str": (lambda: fm.power_time_grid(4, "2"), TypeError, "exponent"),
    "power_time_grid/exponent too large": (lambda: fm.power_time_grid(10, 1e4), ValueError, "exponent"),
    "power_time_grid/steps negative": (lambda: fm.power_time_grid(-1, 2.0), ValueError, "steps"),
    "cosine_time_grid/steps 0": (lambda: fm.cosine_time_grid(0), ValueError, "steps"),
    "cosine_time_grid/dtype bool": (lambda: fm.cosine_time_grid(4, dtype=torch.bool), TypeError, "dtype"),
    "shifted_time_grid/shift inf": (lambda: fm.shifted_time_grid(4, INF), ValueError, "shift"),
    "shifted_time_grid/shift NaN": (lambda: fm.shifted_time_grid(4, NAN), ValueError, "shift"),
    "shifted_time_grid/shift 0": (lambda: fm.shifted_time_grid(4, 0.0), ValueError, "shift"),
    "shifted_time_grid/shift None": (lambda: fm.shifted_time_grid(4, None), TypeError, "shift"),
    "shifted_time_grid/shift tiny": (lambda: fm.shifted_time_grid(4, 1e-300), ValueError, "shift"),
    "make_time_grid/unknown name": (lambda: fm.make_time_grid("linear", 4), KeyError, "time grid 'linear'"),
    "make_time_grid/name not str": (lambda: fm.make_time_grid(["power"], 4), TypeError, "name"),
    "make_time_grid/unknown parameter": (
        lambda: fm.make_time_grid("power", 4, exponnent=2.0),
        KeyError,
        "exponnent",
    ),
    "make_time_grid/missing parameter": (lambda: fm.make_time_grid("shifted", 4), TypeError, "shift"),
    "make_time_grid/NaN parameter": (
        lambda: fm.make_time_grid("power", 4, exponent=NAN),
        ValueError,
        "exponent",
    ),
    # --- time samplers ----------------------------------------------------------------------------------
    "UniformTimeSampler/low NaN": (lambda: fm.UniformTimeSampler(low=NAN), ValueError, "low"),
    "UniformTimeSampler/high str": (lambda: fm.UniformTimeSampler(high="1"), TypeError, "high"),
    "UniformTimeSampler/high > 1": (lambda: fm.UniformTimeSampler(high=2.0), ValueError, "high"),
    "UniformTimeSampler/batch_size negative": (lambda: fm.UniformTimeSampler()(-1), ValueError, "batch_size"),
    "UniformTimeSampler/batch_size float": (lambda: fm.UniformTimeSampler()(2.0), TypeError, "batch_size"),
    "UniformTimeSampler/dtype int": (
        lambda: fm.UniformTimeSampler()(2, dtype=torch.int64),
        TypeError,
        "dtype",
    ),
    "UniformTimeSampler/generator str": (
        lambda: fm.UniformTimeSampler()(2, generator="seed"),
        TypeError,
        "generator",
    ),
    "BetaTimeSampler/alpha NaN": (lambda: fm.BetaTimeSampler(alpha=NAN), ValueError, "alpha"),
    "BetaTimeSampler/beta inf": (lambda: fm.BetaTimeSampler(beta=INF), ValueError, "beta"),
    "BetaTimeSampler/alpha negative": (lambda: fm.BetaTimeSampler(alpha=-1.0), ValueError, "alpha"),
    "BetaTimeSampler/scale NaN": (lambda: fm.BetaTimeSampler(scale=NAN), ValueError, "scale"),
    "BetaTimeSampler/offset inf": (lambda: fm.BetaTimeSampler(offset=INF), ValueError, "offset"),
    "BetaTimeSampler/offset negative": (lambda: fm.BetaTimeSampler(offset=-0.1), ValueError, "offset"),
    "BetaTimeSampler/pi0_convention str": (
        lambda: fm.BetaTimeSampler(pi0_convention="no"),
        TypeError,
        "pi0_convention",
    ),
    "BetaTimeSampler/dtype int": (lambda: fm.BetaTimeSampler()(2, dtype=torch.int64), TypeError, "dtype"),
    "BetaTimeSampler/batch_size 0": (lambda: fm.BetaTimeSampler()(0), ValueError, "batch_size"),
    "LogitNormalTimeSampler/mean NaN": (lambda: fm.LogitNormalTimeSampler(mean=NAN), ValueError, "mean"),
    "LogitNormalTimeSampler/std inf": (lambda: fm.LogitNormalTimeSampler(std=INF), ValueError, "std"),
    "LogitNormalTimeSampler/std 0": (lambda: fm.LogitNormalTimeSampler(std=0.0), ValueError, "std"),
    "LogitNormalTimeSampler/generator int": (
        lambda: fm.LogitNormalTimeSampler()(2, generator=1),
        TypeError,
        "generator",
    ),
    "make_time_sampler/unknown name": (lambda: fm.make_time_sampler("cosine"), KeyError, "sampler 'cosine'"),
    "make_time_sampler/name not str": (lambda: fm.make_time_sampler(None), TypeError, "name"),
    "make_time_sampler/unknown parameter": (
        lambda: fm.make_time_sampler("beta", alfa=2.0),
        KeyError,
        "alfa",
    ),
    # --- probability path -------------------------------------------------------------------------------
    "interpolate/noise NaN": (
        lambda: fm.interpolate(_with(NAN), _noise(), torch.zeros(B)),
        ValueError,
        "noise must be finite",
    ),
    "interpolate/actions inf": (
        lambda: fm.interpolate(_noise(), _with(INF), torch.zeros(B)),
        ValueError,
        "actions must be finite",
    ),
    "interpolate/tau NaN": (
        lambda: fm.interpolate(_noise(), _noise(), torch.tensor([0.5, NAN])),
        ValueError,
        "tau must be finite",
    ),
    "interpolate/tau > 1": (
        lambda: fm.interpolate(_noise(), _noise(), torch.tensor([0.5, 1.5])),
        ValueError,
        r"tau must lie in \[0, 1\]",
    ),
    "interpolate/tau negative scalar": (
        lambda: fm.interpolate(_noise(), _noise(), torch.tensor(-0.1)),
        ValueError,
        r"tau must lie in \[0, 1\]",
    ),
    "interpolate/tau float": (lambda: fm.interpolate(_noise(), _noise(), 0.5), TypeError, "tau"),
    "interpolate/tau wrong batch": (
        lambda: fm.interpolate(_noise(), _noise(), torch.zeros(B + 1)),
        ValueError,
        "tau must have shape",
    ),
    "interpolate/actions int": (
        lambda: fm.interpolate(_noise(), torch.zeros(B, H, D, dtype=torch.long), torch.zeros(B)),
        TypeError,
        "actions",
    ),
    "interpolate/shape mismatch": (
        lambda: fm.interpolate(torch.zeros(B, H, 2), _noise(), torch.zeros(B)),
        ValueError,
        "noise must have the shape of actions",
    ),
    "target_velocity/noise inf": (
        lambda: fm.target_velocity(_with(INF), _noise()),
        ValueError,
        "noise must be finite",
    ),
    "target_velocity/actions NaN": (
        lambda: fm.target_velocity(_noise(), _with(NAN)),
        ValueError,
        "actions must be finite",
    ),
    "target_velocity/actions list": (lambda: fm.target_velocity(_noise(), [0.0]), TypeError, "actions"),
    "tau_from_pi0_time/int": (lambda: fm.tau_from_pi0_time(torch.zeros(2, dtype=torch.long)), TypeError, "t"),
    "pi0_time_from_tau/float": (lambda: fm.pi0_time_from_tau(0.5), TypeError, "tau"),
    "velocity_from_pi0/list": (lambda: fm.velocity_from_pi0([1.0]), TypeError, "u"),
    "pi0_velocity_from_velocity/int": (
        lambda: fm.pi0_velocity_from_velocity(torch.zeros(2, dtype=torch.int32)),
        TypeError,
        "v",
    ),
    "velocity_fn_from_pi0/not callable": (
        lambda: fm.velocity_fn_from_pi0(None),
        TypeError,
        "pi0_velocity_fn",
    ),
    # --- masked loss ------------------------------------------------------------------------------------
    "valid_entry_mask/shape 2-D": (lambda: fm.valid_entry_mask((2, 3)), ValueError, "shape"),
    "valid_entry_mask/shape negative": (lambda: fm.valid_entry_mask((2, -3, 4)), ValueError, "shape"),
    "valid_entry_mask/shape int": (lambda: fm.valid_entry_mask(6), ValueError, "shape"),
    "valid_entry_mask/step_mask float": (
        lambda: fm.valid_entry_mask((B, H, D), step_mask=torch.ones(B, H)),
        TypeError,
        "step_mask",
    ),
    "valid_entry_mask/action_dim_mask wrong shape": (
        lambda: fm.valid_entry_mask((B, H, D), action_dim_mask=torch.ones(D + 1, dtype=torch.bool)),
        ValueError,
        "action_dim_mask",
    ),
    "flow_matching_loss/target NaN": (
        lambda: fm.flow_matching_loss(_noise(), _with(NAN)),
        ValueError,
        "target_velocity must be finite",
    ),
    "flow_matching_loss/target inf": (
        lambda: fm.flow_matching_loss(_noise(), _with(INF)),
        ValueError,
        "target_velocity must be finite",
    ),
    "flow_matching_loss/unknown reduction": (
        lambda: fm.flow_matching_loss(_noise(), _noise(), reduction="sum"),
        ValueError,
        "reduction",
    ),
    "flow_matching_loss/predicted int": (
        lambda: fm.flow_matching_loss(torch.zeros(B, H, D, dtype=torch.long), _noise()),
        TypeError,
        "predicted_velocity",
    ),
    "flow_matching_loss/predicted 2-D": (
        lambda: fm.flow_matching_loss(torch.zeros(B, H), torch.zeros(B, H)),
        ValueError,
        "predicted_velocity",
    ),
    "flow_matching_loss/step_mask wrong shape": (
        lambda: fm.flow_matching_loss(_noise(), _noise(), step_mask=torch.ones(B, H + 1, dtype=torch.bool)),
        ValueError,
        "step_mask",
    ),
    # --- FlowMatchingHeadConfig / BackboneConfig --------------------------------------------------------
    "FlowMatchingHeadConfig/mlp_ratio NaN": (lambda: _config(mlp_ratio=NAN), ValueError, "mlp_ratio"),
    "FlowMatchingHeadConfig/mlp_ratio inf": (lambda: _config(mlp_ratio=INF), ValueError, "mlp_ratio"),
    "FlowMatchingHeadConfig/time_max_period inf": (
        lambda: _config(time_max_period=INF),
        ValueError,
        "time_max_period",
    ),
    "FlowMatchingHeadConfig/time_min_period str": (
        lambda: _config(time_min_period="0.004"),
        TypeError,
        "time_min_period",
    ),
    "FlowMatchingHeadConfig/horizon negative": (lambda: _config(horizon=-1), ValueError, "horizon"),
    "FlowMatchingHeadConfig/time_sampler unknown": (
        lambda: _config(time_sampler="cosine"),
        ValueError,
        "time_sampler",
    ),
    "FlowMatchingHeadConfig.from_dict/list": (
        lambda: fm.FlowMatchingHeadConfig.from_dict([("action_dim", 3)]),
        TypeError,
        "data",
    ),
    "FlowMatchingHeadConfig.from_dict/unknown key": (
        lambda: fm.FlowMatchingHeadConfig.from_dict({**_config().to_dict(), "chunk": 3}),
        KeyError,
        "chunk",
    ),
    "BackboneConfig/mlp_ratio NaN": (
        lambda: fm.BackboneConfig(width=8, context_dim=C, mlp_ratio=NAN),
        ValueError,
        "mlp_ratio",
    ),
    "BackboneConfig/mlp_ratio str": (
        lambda: fm.BackboneConfig(width=8, context_dim=C, mlp_ratio="4"),
        TypeError,
        "mlp_ratio",
    ),
    "BackboneConfig/heads 0": (
        lambda: fm.BackboneConfig(width=8, context_dim=C, heads=0),
        ValueError,
        "heads",
    ),
    "TransformerBackbone/config dict": (lambda: fm.TransformerBackbone({"width": 8}), TypeError, "config"),
    "TransformerBackbone/context 1-D": (
        lambda: BACKBONE(torch.zeros(B, H, 8), torch.zeros(C)),
        ValueError,
        "context must have shape",
    ),
    "TransformerBackbone/context_mask float": (
        lambda: BACKBONE(torch.zeros(B, H, 8), torch.zeros(B, 3, C), context_mask=torch.ones(B, 3)),
        TypeError,
        "context_mask",
    ),
    "TransformerBackbone/query_tokens int": (
        lambda: BACKBONE(torch.zeros(B, H, 8, dtype=torch.long), _ctx()),
        TypeError,
        "query_tokens",
    ),
    # --- FlowMatchingHead -------------------------------------------------------------------------------
    "FlowMatchingHead/config dict": (lambda: fm.FlowMatchingHead({"action_dim": 3}), TypeError, "config"),
    "FlowMatchingHead.loss/actions NaN": (
        lambda: HEAD.loss(_with(NAN), _ctx()),
        ValueError,
        "actions must be finite",
    ),
    "FlowMatchingHead.loss/actions inf": (
        lambda: HEAD.loss(_with(INF, where=(1, 3, 2)), _ctx()),
        ValueError,
        "actions must be finite",
    ),
    "FlowMatchingHead.loss/context NaN": (
        lambda: HEAD.loss(_noise(), _with(NAN, (B, C), (1, 0))),
        ValueError,
        "context must be finite",
    ),
    "FlowMatchingHead.loss/context token inf": (
        lambda: HEAD.loss(_noise(), _with(INF, (B, 3, C), (0, 2, 1))),
        ValueError,
        "context must be finite",
    ),
    "FlowMatchingHead.loss/state NaN": (
        lambda: STATE_HEAD.loss(_noise(), _ctx(), state=_with(NAN, (B, S), (0, 1))),
        ValueError,
        "state must be finite",
    ),
    "FlowMatchingHead.loss/state wrong batch": (
        lambda: STATE_HEAD.loss(_noise(), _ctx(), state=torch.zeros(B + 1, S)),
        ValueError,
        "state must have shape",
    ),
    "FlowMatchingHead.loss/actions float64": (
        lambda: HEAD.loss(_noise().double(), _ctx()),
        TypeError,
        "actions must have the head's dtype",
    ),
    "FlowMatchingHead.loss/context float64": (
        lambda: HEAD.loss(_noise(), _ctx().double()),
        TypeError,
        "context must have the head's dtype",
    ),
    "FlowMatchingHead.loss/actions wrong shape": (
        lambda: HEAD.loss(torch.zeros(B, H + 1, D), _ctx()),
        ValueError,
        "actions must have shape",
    ),
    "FlowMatchingHead.loss/context wrong batch": (
        lambda: HEAD.loss(_noise(), torch.zeros(B + 1, C)),
        ValueError,
        "context must have shape",
    ),
    "FlowMatchingHead.loss/generator int": (
        lambda: HEAD.loss(_noise(), _ctx(), generator=0),
        TypeError,
        "generator",
    ),
    "FlowMatchingHead.loss/step_mask float": (
        lambda: HEAD.loss(_noise(), _ctx(), step_mask=torch.ones(B, H)),
        TypeError,
        "step_mask",
    ),
    "FlowMatchingHead.loss/context_mask all False": (
        lambda: HEAD.loss(_noise(), torch.zeros(B, 3, C), context_mask=torch.zeros(B, 3, dtype=torch.bool)),
        ValueError,
        "context_mask",
    ),
    "FlowMatchingHead.sample/context NaN": (
        lambda: HEAD.sample(_with(NAN, (B, C), (0, 0))),
        ValueError,
        "context must be finite",
    ),
    "FlowMatchingHead.sample/noise NaN": (
        lambda: HEAD.sample(_ctx(), noise=_with(NAN)),
        ValueError,
        "noise must be finite",
    ),
    "FlowMatchingHead.sample/noise float64": (
        lambda: HEAD.sample(_ctx(), noise=_noise().double()),
        TypeError,
        "noise must have the head's dtype",
    ),
    "FlowMatchingHead.sample/noise wrong shape": (
        lambda: HEAD.sample(_ctx(), noise=torch.zeros(B, H, D + 1)),
        ValueError,
        "noise must have shape",
    ),
    "FlowMatchingHead.sample/grid NaN": (
        lambda: HEAD.sample(_ctx(), time_grid=torch.tensor([0.0, NAN, 1.0])),
        ValueError,
        "time_grid must be finite",
    ),
    "FlowMatchingHead.sample/steps negative": (lambda: HEAD.sample(_ctx(), steps=-1), ValueError, "steps"),
    "FlowMatchingHead.sample/unknown solver": (
        lambda: HEAD.sample(_ctx(), solver="rk45"),
        KeyError,
        "solver 'rk45'",
    ),
    "FlowMatchingHead.sample/context list": (lambda: HEAD.sample([[0.0] * C]), TypeError, "context"),
    "FlowMatchingHead.sample/context 1-D": (
        lambda: HEAD.sample(torch.zeros(C)),
        ValueError,
        "context must have shape",
    ),
    "FlowMatchingHead.sample/state missing": (lambda: STATE_HEAD.sample(_ctx()), ValueError, "state"),
    "FlowMatchingHead.sample/state inf": (
        lambda: STATE_HEAD.sample(_ctx(), state=_with(INF, (B, S), (1, 1))),
        ValueError,
        "state must be finite",
    ),
    "FlowMatchingHead.velocity_fn/context inf": (
        lambda: HEAD.velocity_fn(_with(INF, (B, C), (0, 0))),
        ValueError,
        "context must be finite",
    ),
    "FlowMatchingHead.velocity/noisy_actions wrong shape": (
        lambda: HEAD.velocity(torch.zeros(B, H, D + 1), torch.zeros(B), _ctx()),
        ValueError,
        "noisy_actions",
    ),
    # --- encoders, decoder, time embedding --------------------------------------------------------------
    "ActionEncoder/max_period inf": (
        lambda: fm.ActionEncoder(D, 8, max_period=INF),
        ValueError,
        "max_period",
    ),
    "ActionEncoder/min_period NaN": (
        lambda: fm.ActionEncoder(D, 8, min_period=NAN),
        ValueError,
        "min_period",
    ),
    "ActionEncoder/min_period > max_period": (
        lambda: fm.ActionEncoder(D, 8, min_period=5.0),
        ValueError,
        "min_period",
    ),
    "ActionEncoder/action_dim negative": (lambda: fm.ActionEncoder(-3, 8), ValueError, "action_dim"),
    "ActionEncoder/width odd": (lambda: fm.ActionEncoder(D, 7), ValueError, "width"),
    "ActionEncoder.forward/tau int": (
        lambda: ENCODER(_noise(), torch.zeros(B, dtype=torch.long)),
        TypeError,
        "tau",
    ),
    "ActionEncoder.forward/tau wrong batch": (
        lambda: ENCODER(_noise(), torch.zeros(B + 1)),
        ValueError,
        "tau",
    ),
    "ActionEncoder.forward/noisy_actions 2-D": (
        lambda: ENCODER(torch.zeros(B, D), torch.zeros(B)),
        ValueError,
        "noisy_actions",
    ),
    "StateEncoder/state_dim 0": (lambda: fm.StateEncoder(0, 8), ValueError, "state_dim"),
    "StateEncoder.forward/state wrong width": (
        lambda: STATE_ENCODER(torch.zeros(B, S + 1)),
        ValueError,
        "state",
    ),
    "ActionDecoder/width float": (lambda: fm.ActionDecoder(8.0, D), TypeError, "width"),
    "ActionDecoder.forward/action_tokens int": (
        lambda: DECODER(torch.zeros(B, H, 8, dtype=torch.long)),
        TypeError,
        "action_tokens",
    ),
    "sinusoidal_time_embedding/tau NaN": (
        lambda: fm.sinusoidal_time_embedding(torch.tensor([0.0, NAN]), 8),
        ValueError,
        "tau must be finite",
    ),
    "sinusoidal_time_embedding/tau inf": (
        lambda: fm.sinusoidal_time_embedding(torch.tensor([INF, 0.0]), 8),
        ValueError,
        "tau must be finite",
    ),
    "sinusoidal_time_embedding/max_period inf": (
        lambda: fm.sinusoidal_time_embedding(torch.zeros(2), 8, max_period=INF),
        ValueError,
        "max_period",
    ),
    "sinusoidal_time_embedding/min_period str": (
        lambda: fm.sinusoidal_time_embedding(torch.zeros(2), 8, min_period="0.1"),
        TypeError,
        "min_period",
    ),
    "sinusoidal_time_embedding/dim negative": (
        lambda: fm.sinusoidal_time_embedding(torch.zeros(2), -8),
        ValueError,
        "dim",
    ),
    # --- bimodal task, regressor, fit -------------------------------------------------------------------
    "BimodalChunkTask/mode_offset NaN": (
        lambda: fm.BimodalChunkTask(mode_offset=NAN),
        ValueError,
        "mode_offset",
    ),
    "BimodalChunkTask/noise_std inf": (lambda: fm.BimodalChunkTask(noise_std=INF), ValueError, "noise_std"),
    "BimodalChunkTask/noise_std negative": (
        lambda: fm.BimodalChunkTask(noise_std=-0.1),
        ValueError,
        "noise_std",
    ),
    "BimodalChunkTask/horizon 0": (lambda: fm.BimodalChunkTask(horizon=0), ValueError, "horizon"),
    "BimodalChunkTask.sample/batch_size negative": (lambda: TASK.sample(-2), ValueError, "batch_size"),
    "BimodalChunkTask.sample/generator int": (lambda: TASK.sample(2, generator=3), TypeError, "generator"),
    "BimodalChunkTask.mode_centers/context NaN": (
        lambda: TASK.mode_centers(_with(NAN, (2, 2), (0, 0))),
        ValueError,
        "context must be finite",
    ),
    "BimodalChunkTask.nearest_mode/actions NaN": (
        lambda: TASK.nearest_mode(_with(NAN, (2, 4, 2)), torch.zeros(2, 2)),
        ValueError,
        "actions must be finite",
    ),
    "BimodalChunkTask.nearest_mode/context list": (
        lambda: TASK.nearest_mode(torch.zeros(2, 4, 2), [[0.0, 0.0]]),
        TypeError,
        "context",
    ),
    "MSERegressor/config dict": (lambda: fm.MSERegressor({"action_dim": 2}), TypeError, "config"),
    "MSERegressor.loss/actions broadcastable": (
        lambda: REGRESSOR.loss(torch.zeros(4, 2), torch.zeros(2, 2)),
        ValueError,
        "actions must have shape",
    ),
    "MSERegressor.loss/actions NaN": (
        lambda: REGRESSOR.loss(_with(NAN, (2, 4, 2)), torch.zeros(2, 2)),
        ValueError,
        "actions must be finite",
    ),
    "MSERegressor.predict/context inf": (
        lambda: REGRESSOR.predict(_with(INF, (2, 2), (1, 1))),
        ValueError,
        "context must be finite",
    ),
    "fit/model wrong type": (lambda: fm.fit(torch.nn.Linear(2, 2), TASK, steps=1), TypeError, "model"),
    "fit/task wrong type": (lambda: fm.fit(REGRESSOR, {"horizon": 4}, steps=1), TypeError, "task"),
    "fit/task shape mismatch": (
        lambda: fm.fit(REGRESSOR, fm.BimodalChunkTask(horizon=5), steps=1),
        ValueError,
        "task",
    ),
    "fit/steps 0": (lambda: fm.fit(REGRESSOR, TASK, steps=0), ValueError, "steps"),
    "fit/learning_rate NaN": (
        lambda: fm.fit(REGRESSOR, TASK, steps=1, learning_rate=NAN),
        ValueError,
        "learning_rate",
    ),
    "fit/learning_rate negative": (
        lambda: fm.fit(REGRESSOR, TASK, steps=1, learning_rate=-1e-3),
        ValueError,
        "learning_rate",
    ),
    "fit/seed str": (lambda: fm.fit(REGRESSOR, TASK, steps=1, seed="0"), TypeError, "seed"),
    "fit/batch_size float": (
        lambda: fm.fit(REGRESSOR, TASK, steps=1, batch_size=8.0),
        TypeError,
        "batch_size",
    ),
    # --- solver registry --------------------------------------------------------------------------------
    "register_solver/not a solver": (lambda: fm.register_solver(object()), TypeError, "solver"),
    "register_solver/name int": (lambda: fm.register_solver(_Named(name=3)), TypeError, "solver.name"),
    "register_solver/name empty": (lambda: fm.register_solver(_Named(name="")), ValueError, "solver.name"),
    "register_solver/order 0": (lambda: fm.register_solver(_Named(order=0)), ValueError, "solver.order"),
    "register_solver/evaluations_per_step float": (
        lambda: fm.register_solver(_Named(evaluations_per_step=1.5)),
        TypeError,
        "solver.evaluations_per_step",
    ),
    "register_solver/name taken": (lambda: fm.register_solver(_Named(name="euler")), ValueError, "'euler'"),
    "register_solver/adaptive name taken": (
        lambda: fm.register_solver(_Named(name="dopri5")),
        ValueError,
        "'dopri5'",
    ),
    # --- reference flows, distances ---------------------------------------------------------------------
    "GaussianFlow/mu NaN": (lambda: fm.GaussianFlow(NAN, 1.0), ValueError, "mu"),
    "GaussianFlow/sigma inf": (lambda: fm.GaussianFlow(0.0, INF), ValueError, "sigma"),
    "GaussianFlow/sigma NaN": (lambda: fm.GaussianFlow(0.0, NAN), ValueError, "sigma"),
    "GaussianFlow/sigma 0": (lambda: fm.GaussianFlow(0.0, 0.0), ValueError, "sigma"),
    "GaussianFlow/warped str": (lambda: fm.GaussianFlow(0.0, 1.0, warped="yes"), TypeError, "warped"),
    "GaussianFlow.velocity/u float": (lambda: FLOW.velocity(torch.zeros(B, D), 0.5), TypeError, "u"),
    "GaussianFlow.velocity/u wrong batch": (
        lambda: FLOW.velocity(torch.zeros(B, D), torch.zeros(B + 1)),
        ValueError,
        "u must have shape",
    ),
    "GaussianFlow.solution/eps NaN": (
        lambda: FLOW.solution(_with(NAN, (B, D), (0, 0)), torch.zeros(3)),
        ValueError,
        "eps must be finite",
    ),
    "GaussianFlow.solution/u inf": (
        lambda: FLOW.solution(torch.zeros(B, D), torch.tensor([0.0, INF])),
        ValueError,
        "u must be finite",
    ),
    "GaussianFlow.endpoint/eps inf": (
        lambda: FLOW.endpoint(_with(INF, (B, D), (1, 0))),
        ValueError,
        "eps must be finite",
    ),
    "wasserstein_1d/x NaN": (
        lambda: fm.wasserstein_1d(torch.tensor([0.0, NAN]), torch.zeros(2)),
        ValueError,
        "x must be finite",
    ),
    "wasserstein_1d/y inf": (
        lambda: fm.wasserstein_1d(torch.zeros(2), torch.tensor([INF, 0.0])),
        ValueError,
        "y must be finite",
    ),
    "wasserstein_1d/empty": (lambda: fm.wasserstein_1d(torch.zeros(0), torch.zeros(0)), ValueError, "x"),
    "wasserstein_1d/y list": (lambda: fm.wasserstein_1d(torch.zeros(2), [0.0, 1.0]), TypeError, "y"),
    "wasserstein_1d/p 3": (lambda: fm.wasserstein_1d(torch.zeros(2), torch.zeros(2), p=3), ValueError, "p"),
    "sliced_wasserstein/y list": (lambda: fm.sliced_wasserstein(torch.zeros(3, 2), [[0.0]]), TypeError, "y"),
    "sliced_wasserstein/x NaN": (
        lambda: fm.sliced_wasserstein(_with(NAN, (3, 2), (0, 0)), torch.zeros(3, 2)),
        ValueError,
        "x must be finite",
    ),
    "sliced_wasserstein/num_projections 0": (
        lambda: fm.sliced_wasserstein(torch.zeros(3, 2), torch.zeros(3, 2), num_projections=0),
        ValueError,
        "num_projections",
    ),
    "sliced_wasserstein/generator str": (
        lambda: fm.sliced_wasserstein(torch.zeros(3, 2), torch.zeros(3, 2), generator="0"),
        TypeError,
        "generator",
    ),
}


@pytest.mark.parametrize(("call", "error", "match"), list(CASES.values()), ids=list(CASES))
def test_bad_input_raises_a_clear_error_that_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_there_are_at_least_two_hundred_bad_input_cases():
    # A floor, so cases are not silently dropped; the exact count is reported by pytest's collection.
    assert len(CASES) >= 200


def _parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda head, g: head.loss(_with(NAN), _ctx(), generator=g), "actions"),
        (lambda head, g: head.loss(_noise(), _with(INF, (B, C)), generator=g), "context"),
        (lambda head, g: head.loss(_noise(), torch.zeros(B + 1, C), generator=g), "context"),
        (lambda head, g: head.sample(_with(NAN, (B, C)), generator=g), "context"),
        (lambda head, g: head.sample(_ctx(), steps=0, generator=g), "steps"),
        (lambda head, g: head.sample(_ctx(), solver="nope", generator=g), "solver"),
        (lambda head, g: head.sample(_ctx(), time_grid=torch.tensor([0.0, NAN]), generator=g), "time_grid"),
        (lambda head, g: head.sample(_ctx(), rtol=NAN, generator=g), "rtol"),
    ],
)
def test_a_refused_head_call_leaves_its_parameters_and_generator_unchanged(call, match):
    head = fm.FlowMatchingHead(_config()).train()
    before = _parameters(head)
    generator = torch.Generator().manual_seed(7)
    generator_state = generator.get_state()
    with pytest.raises((TypeError, ValueError, KeyError), match=match):
        call(head, generator)
    assert all(torch.equal(before[name], value) for name, value in head.state_dict().items())
    assert torch.equal(generator.get_state(), generator_state)
    assert all(p.grad is None for p in head.parameters())


def test_a_refused_fit_leaves_the_model_unchanged():
    model = fm.FlowMatchingHead(_config(horizon=4, action_dim=2, context_dim=2))
    before = _parameters(model)
    with pytest.raises(ValueError, match="learning_rate"):
        fm.fit(model, TASK, steps=2, learning_rate=INF)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


@pytest.mark.parametrize(
    "solver",
    [_Named(name=3), _Named(name=""), _Named(order=-1), _Named(evaluations_per_step=0), _Named(name="heun")],
)
def test_a_refused_registration_leaves_the_registry_unchanged(solver):
    before = dict(fm.FIXED_STEP_SOLVERS)
    with pytest.raises((TypeError, ValueError), match="solver"):
        fm.register_solver(solver)
    assert before == fm.FIXED_STEP_SOLVERS
    assert fm.available_solvers() == [*before, *fm.ADAPTIVE_SOLVERS]


def test_padding_may_hold_nan_in_the_loss_but_real_entries_may_not():
    head = fm.FlowMatchingHead(_config())
    step_mask = torch.ones(B, H, dtype=torch.bool)
    step_mask[:, -1] = False
    actions = torch.zeros(B, H, D)
    actions[:, -1] = NAN  # padded steps: accepted, they never reach the loss
    loss = head.loss(actions, _ctx(), step_mask=step_mask, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    actions[0, 0, 0] = NAN
    with pytest.raises(ValueError, match="actions must be finite"):
        head.loss(actions, _ctx(), step_mask=step_mask, generator=torch.Generator().manual_seed(0))


def test_a_field_returning_nan_is_not_checked_per_step_and_gives_a_nan_sample():
    # Documented: checking the field's output at every step would synchronize a GPU per step.
    result = fm.sample(lambda x, tau: torch.full_like(x, NAN), torch.zeros(B, D), steps=2)
    assert torch.isnan(result.x).all()
    assert result.nfe == 2


@pytest.mark.parametrize(
    "convert",
    [fm.tau_from_pi0_time, fm.pi0_time_from_tau, fm.velocity_from_pi0, fm.pi0_velocity_from_velocity],
)
def test_the_pi0_conversions_check_types_only_so_nan_maps_to_nan(convert):
    # Documented: they run inside a sampler's loop (a pi0 adapter), where a value check costs a sync per step.
    assert torch.isnan(convert(torch.tensor([NAN]))).all()
