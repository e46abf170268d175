"""Exceptions the engine raises; each names what failed and where."""

from __future__ import annotations


class StreamingError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigurationError(StreamingError, ValueError):
    """A configuration value or a combination of values is invalid."""


class NotSerializableError(StreamingError, TypeError):
    """A user function cannot travel to the executor (cloudpickle refused it)."""

    def __init__(self, operator: str, cause: BaseException) -> None:
        super().__init__(
            f"the function given to {operator} cannot be serialized with cloudpickle: "
            f"{type(cause).__name__}: {cause}"
        )
        self.operator = operator


class DataNotSerializableError(StreamingError, TypeError):
    """Records (or a task) cannot be pickled to reach a worker process. As Spark's "task not
    serializable", it fails the job at once: retrying cannot help."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(
            f"{what} cannot be pickled for the worker processes: "
            f"{type(cause).__name__}: {cause}"
        )


class ClusterUnavailableError(StreamingError, ConnectionError):
    """The cluster an executor backend runs on cannot be reached, or was lost (the Dask
    scheduler went away). Retrying a task cannot help: the job fails at once."""


class WorkerImportError(StreamingError, ImportError):
    """A worker cannot import a module the job's functions were pickled by reference from."""

    def __init__(self, module: str, worker: str) -> None:
        super().__init__(
            f"module {module!r} cannot be imported on worker {worker}: install it on every "
            f"worker, or ship it with ssc.add_py_file(path) (Spark's addPyFile)"
        )
        self.module = module
        self.worker = worker

    def __reduce__(self) -> tuple:
        return (type(self), (self.module, self.worker))


class OperatorError(StreamingError):
    """A user function raised inside an operator; carries the operator's name.

    Raised in the worker; it must pickle, so it keeps the cause's text, not the cause.
    """

    def __init__(self, operator: str, cause_type: str, cause_text: str, trace: str = "") -> None:
        super().__init__(operator, cause_type, cause_text, trace)
        self.operator = operator
        self.cause_type = cause_type
        self.cause_text = cause_text
        self.trace = trace

    def __str__(self) -> str:
        return f"{self.operator} raised {self.cause_type}: {self.cause_text}"


class JobFailedError(StreamingError):
    """An output operation of one batch failed after every retry."""

    def __init__(self, batch_time: float, output_operation: str, cause: BaseException) -> None:
        super().__init__(
            f"batch {batch_time:.3f}: output operation {output_operation} failed: {cause}"
        )
        self.batch_time = batch_time
        self.output_operation = output_operation
        self.cause = cause


class TaskFailedError(StreamingError):
    """A task failed task_max_failures times in a row."""

    def __init__(self, description: str, attempts: int, cause: BaseException) -> None:
        super().__init__(f"{description} failed {attempts} time(s); last error: {cause}")
        self.attempts = attempts
        self.cause = cause


class ContextStateError(StreamingError, RuntimeError):
    """The StreamingContext is used in a state that does not allow the call."""


class WindowCheckError(StreamingError):
    """A checked inverse window (``window_check_interval``) differs from a recomputation."""

    def __init__(self, operator: str, message: str, differing: dict | None = None) -> None:
        super().__init__(message)
        self.operator = operator
        self.differing = differing or {}

    def __reduce__(self) -> tuple:
        return (type(self), (self.operator, str(self), self.differing))


class CheckpointSecurityError(StreamingError):
    """A checkpoint directory, file or key that another user could have written: refused
    before anything in it is used."""


class CheckpointFormatError(StreamingError):
    """A checkpoint or log file in a format this version does not read (an older,
    unauthenticated format, or not the engine's file at all)."""


class CheckpointDamagedError(StreamingError):
    """The checkpoint cannot be trusted to resume from: no usable metadata where some was
    written, or a fallback that cannot recompute what the damaged files held."""


class DataLossError(StreamingError):
    """Recovery found records that were written but cannot be read back; names what is
    lost (blocks, the batches that had them). ``accept_data_loss`` resumes without them."""

    def __init__(self, message: str, lost: list[str] | None = None) -> None:
        super().__init__(message)
        self.lost = lost or []

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.lost))


class CheckpointWriteError(StreamingError):
    """A checkpoint could not be written after every retry; the context stops with it."""
