"""The one sampling loop and its machinery: chunking, kwargs expansion, streaming reducers."""

from .chunking import auto_chunk_size
from .reducers import NT_TYPES, StreamingMoments
from .tunnel import SampleTransform, SamplingReport, SmoothTunnel, WeightNoiseLike

__all__ = [
    "NT_TYPES",
    "SampleTransform",
    "SamplingReport",
    "SmoothTunnel",
    "StreamingMoments",
    "WeightNoiseLike",
    "auto_chunk_size",
]
