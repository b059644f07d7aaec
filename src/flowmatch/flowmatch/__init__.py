"""flowmatch: a flow-matching chunked action head and property-tested ODE samplers, for any backbone.

Convention: ``tau = 0`` is noise, ``tau = 1`` is data, ``a_tau = (1 - tau) * eps + tau * a`` and the target
velocity is ``a - eps``; pi0's ``t = 1 - tau`` convention is converted at the edge
(:mod:`flowmatch.probability_path`).
"""

from flowmatch.action_tokens import ActionDecoder, ActionEncoder, StateEncoder
from flowmatch.bimodal_task import BimodalChunkTask, MSERegressor, fit
from flowmatch.flow_head import FlowMatchingHead, FlowMatchingHeadConfig
from flowmatch.masked_loss import flow_matching_loss, valid_entry_mask
from flowmatch.ode_sampling import SampleResult, gaussian_noise, sample
from flowmatch.ode_solvers import (
    ADAPTIVE_SOLVERS,
    FIXED_STEP_SOLVERS,
    EulerSolver,
    FixedStepSolver,
    HeunSolver,
    MidpointSolver,
    RK4Solver,
    RK4ThreeEighthsSolver,
    available_solvers,
    register_solver,
)
from flowmatch.probability_path import (
    VelocityFn,
    interpolate,
    pi0_time_from_tau,
    pi0_velocity_from_velocity,
    target_velocity,
    tau_from_pi0_time,
    velocity_fn_from_pi0,
    velocity_from_data_prediction,
    velocity_from_pi0,
)
from flowmatch.realtime_chunking import RTC_SCHEDULES, RealTimeChunking, RTCSchedule, rtc_weights
from flowmatch.reference_flows import GaussianFlow
from flowmatch.standalone_backbone import BackboneConfig, TransformerBackbone
from flowmatch.time_embedding import sinusoidal_time_embedding
from flowmatch.time_grids import (
    cosine_time_grid,
    make_time_grid,
    power_time_grid,
    shifted_time_grid,
    uniform_time_grid,
)
from flowmatch.time_sampling import (
    BetaTimeSampler,
    LogitNormalTimeSampler,
    TimeSampler,
    UniformTimeSampler,
    make_time_sampler,
)
from flowmatch.wasserstein import sliced_wasserstein, wasserstein_1d

__version__ = "0.1.0"

__all__ = [
    "ADAPTIVE_SOLVERS",
    "FIXED_STEP_SOLVERS",
    "RTC_SCHEDULES",
    "ActionDecoder",
    "ActionEncoder",
    "BackboneConfig",
    "BetaTimeSampler",
    "BimodalChunkTask",
    "EulerSolver",
    "FixedStepSolver",
    "FlowMatchingHead",
    "FlowMatchingHeadConfig",
    "GaussianFlow",
    "HeunSolver",
    "LogitNormalTimeSampler",
    "MSERegressor",
    "MidpointSolver",
    "RK4Solver",
    "RK4ThreeEighthsSolver",
    "RTCSchedule",
    "RealTimeChunking",
    "SampleResult",
    "StateEncoder",
    "TimeSampler",
    "TransformerBackbone",
    "UniformTimeSampler",
    "VelocityFn",
    "available_solvers",
    "cosine_time_grid",
    "fit",
    "flow_matching_loss",
    "gaussian_noise",
    "interpolate",
    "make_time_grid",
    "make_time_sampler",
    "pi0_time_from_tau",
    "pi0_velocity_from_velocity",
    "power_time_grid",
    "register_solver",
    "rtc_weights",
    "sample",
    "shifted_time_grid",
    "sinusoidal_time_embedding",
    "sliced_wasserstein",
    "target_velocity",
    "tau_from_pi0_time",
    "uniform_time_grid",
    "valid_entry_mask",
    "velocity_fn_from_pi0",
    "velocity_from_data_prediction",
    "velocity_from_pi0",
    "wasserstein_1d",
]
