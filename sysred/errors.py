"""Exceptions and warnings raised by sysred.

Every error is a ``ValueError`` too, so code that only knows the standard library can still catch
bad input generically; code that knows sysred can tell the cases apart.
"""


class SysredError(ValueError):
    """Base class of every error sysred raises on bad input."""


class NotASystemError(SysredError):
    """Something other than a sysred system was passed where a system is needed."""


class ShapeError(SysredError):
    """Matrices whose shapes do not make a state-space system (or batches that do not broadcast)."""


class NonFiniteError(SysredError):
    """A system matrix holds NaN or Inf."""


class UnstableSystemError(SysredError):
    """The method needs an asymptotically stable system and got an unstable or marginal one."""


class OrderError(SysredError):
    """A requested reduced order is out of range or numerically meaningless."""


class OptionError(SysredError):
    """An option (``tol``, ``method``, ``backend``, ``workers``, ...) has an invalid value."""


class IllConditionedError(SysredError):
    """A result would be dominated by rounding errors (e.g. a near-defective eigenbasis)."""


class IllConditionedWarning(UserWarning):
    """A result may have lost many digits to an ill-conditioned step (e.g. an eigenbasis)."""


class HSVTieError(OrderError):
    """The requested order splits a group of (numerically) equal Hankel singular values."""


class HSVTieWarning(UserWarning):
    """Like :class:`HSVTieError`, issued instead of raising when ``strict=False``."""


class RankDeficientWarning(UserWarning):
    """The reduced order keeps Hankel singular values at round-off level (``strict=False``)."""


class BackendWarning(UserWarning):
    """A requested backend's result failed sysred's check; sysred's own algorithm was used."""
