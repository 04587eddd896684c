"""The one sampling loop and its parts, in the order a call goes through them.

* :mod:`~captum_smooth.core.plan`: the loop's options, checked into a plan;
* :mod:`~captum_smooth.core.noising`: sigma from its spec, the noisy copies of a chunk;
* :mod:`~captum_smooth.core.chunking`, :mod:`~captum_smooth.core.expansion`,
  :mod:`~captum_smooth.core.layer_noise`: chunk sizes, the inner kwargs per chunk, noise at a
  layer;
* :mod:`~captum_smooth.core.loop`: the chunk loop;
* :mod:`~captum_smooth.core.reducers`: streaming reducers (a registered part) and their
  contract, :class:`Reducer` (the optional members: :class:`ErrorReducer`,
  :class:`CountingReducer`, two flags read by :class:`ReducerTraits`);
* :mod:`~captum_smooth.core.error_model`, :mod:`~captum_smooth.core.stopping`: the Monte-Carlo
  error and sampling to a tolerance;
* :mod:`~captum_smooth.core.tunnel`: :class:`SmoothTunnel`, the Captum NoiseTunnel around it.
"""

from .chunking import auto_chunk_size
from .error_model import MonteCarloError
from .loop import SamplingReport
from .plan import LoopOptions, SampleTransform, WeightNoiseLike
from .reducers import (
    NT_TYPES,
    CountingReducer,
    ErrorReducer,
    Reducer,
    ReducerTraits,
    StreamingMoments,
    get_reducer,
    reducer_names,
    register_reducer,
)
from .stopping import ToleranceNotReachedWarning
from .tunnel import SmoothTunnel

__all__ = [
    "NT_TYPES",
    "CountingReducer",
    "ErrorReducer",
    "LoopOptions",
    "MonteCarloError",
    "Reducer",
    "ReducerTraits",
    "SampleTransform",
    "SamplingReport",
    "SmoothTunnel",
    "StreamingMoments",
    "ToleranceNotReachedWarning",
    "WeightNoiseLike",
    "auto_chunk_size",
    "get_reducer",
    "reducer_names",
    "register_reducer",
]
