"""pipeliner_rx: call the result you need; its dependencies run themselves, concurrently, once.

Decorate async (or plain) functions with `step`; each parameter name is a resource the step
needs, ``provides`` names what it computes. Calling a step runs only the missing upstream steps,
each at most once, on a reactive dataflow of ``reactivex`` subjects.
"""

from __future__ import annotations

from ._api import (
    add_environment_resources,
    default_pipeline,
    live,
    resource,
    resource_ready,
    scope,
    step,
)
from ._events import EventKind, StepEvent
from ._executors import StepExecutor
from ._live import LiveStats, LiveStore
from ._pipeline import Pipeline, StepDecorator
from ._plans import Plan
from ._scope import Scope
from ._step import Step
from .exceptions import (
    CycleError,
    DuplicateProviderError,
    LiveStoreClosedError,
    MissingResourceError,
    PipelineError,
    ResourceConflictError,
    ScopeClosedError,
    StepOutputError,
    StepPicklingError,
    StoreInUseError,
    UnknownTargetError,
)

__version__ = "0.1.0"

__all__ = [
    "CycleError",
    "DuplicateProviderError",
    "EventKind",
    "LiveStats",
    "LiveStore",
    "LiveStoreClosedError",
    "MissingResourceError",
    "Pipeline",
    "PipelineError",
    "Plan",
    "ResourceConflictError",
    "Scope",
    "ScopeClosedError",
    "Step",
    "StepDecorator",
    "StepEvent",
    "StepExecutor",
    "StepOutputError",
    "StepPicklingError",
    "StoreInUseError",
    "UnknownTargetError",
    "__version__",
    "add_environment_resources",
    "default_pipeline",
    "live",
    "resource",
    "resource_ready",
    "scope",
    "step",
]

# Show users the public path (`pipeliner_rx.Pipeline`), not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("pipeliner_rx._"):
        _obj.__module__ = __name__
del _name, _obj
