"""PySpark's ``pyspark.accumulators``: ``sc.accumulator(value[, accum_param])``."""

from __future__ import annotations

from ..variables.accumulator import Accumulator, AccumulatorParam, AddingParam

#: PySpark's parameters for numbers (``+`` from 0, 0.0, 0j).
INT_ACCUMULATOR_PARAM = FLOAT_ACCUMULATOR_PARAM = COMPLEX_ACCUMULATOR_PARAM = AddingParam()

__all__ = [
    "COMPLEX_ACCUMULATOR_PARAM",
    "FLOAT_ACCUMULATOR_PARAM",
    "INT_ACCUMULATOR_PARAM",
    "Accumulator",
    "AccumulatorParam",
]
