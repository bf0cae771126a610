"""User-fixable failures.

Every condition a user can fix (bad params, a missing model, an empty calibration set) raises a
subclass of :class:`PipelineError`. Stages and the CLI turn it into one message and exit code 1;
programmer errors stay ``ValueError``/``TypeError`` and keep their traceback.
"""


class PipelineError(Exception):
    """A failure the user can fix; the message says what, the offending value and the fix."""


class ParamsError(PipelineError):
    """params.yaml is missing, malformed or fails validation."""


class ModelError(PipelineError):
    """The ONNX model is missing, invalid, or disagrees with the input spec in params."""


class DataError(PipelineError):
    """The data tree, a sidecar or a stage input is unusable."""


class NoStatisticsError(PipelineError):
    """An encoding was requested for a tensor that no calibration sample reached."""


class GateError(PipelineError):
    """One or more scenes fell under their accuracy bar."""
