"""Decoding on the workers: sources hand over undecoded partitions, tasks decode them as
their first stage, and dead letters come back to the driver with exact counts."""

from .stage import DecodeOutcome, Decoder, Emit, ItemDecoder, decode_stage
from .streams import (
    DeadLetterInputDStream,
    DeadLetterRDD,
    DecodedReceiverInputDStream,
    WorkerDecoding,
)

__all__ = [
    "DeadLetterInputDStream",
    "DeadLetterRDD",
    "DecodeOutcome",
    "DecodedReceiverInputDStream",
    "Decoder",
    "Emit",
    "ItemDecoder",
    "WorkerDecoding",
    "decode_stage",
]
