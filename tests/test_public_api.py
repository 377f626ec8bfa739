"""The public surface: `__all__` is what the package documents and exports."""

from __future__ import annotations

import concurrent.futures
import importlib
import pkgutil
import subprocess
import sys
import typing

import pipeliner_rx
import pipeliner_rx.exceptions

DOCUMENTED = {
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
}


def test_all_matches_documented_names() -> None:
    assert set(pipeliner_rx.__all__) == DOCUMENTED
    assert pipeliner_rx.__all__ == sorted(pipeliner_rx.__all__)
    for name in pipeliner_rx.__all__:
        assert hasattr(pipeliner_rx, name), name


def test_private_modules_export_what_they_define() -> None:
    names = [info.name for info in pkgutil.iter_modules(pipeliner_rx.__path__)]
    private = [name for name in names if name.startswith("_") and not name.startswith("__")]
    assert "_activation" in private and "_inputs" in private
    for module_name in private:
        module = importlib.import_module(f"pipeliner_rx.{module_name}")
        for name in module.__all__:
            assert hasattr(module, name), (module_name, name)


def test_public_classes_show_the_public_module() -> None:
    assert pipeliner_rx.Pipeline.__module__ == "pipeliner_rx"
    assert pipeliner_rx.Step.__module__ == "pipeliner_rx"
    assert pipeliner_rx.CycleError.__module__ == "pipeliner_rx.exceptions"


def test_public_types_are_the_ones_the_api_uses() -> None:
    assert typing.get_type_hints(pipeliner_rx.StepEvent)["kind"] == pipeliner_rx.EventKind
    assert typing.get_args(pipeliner_rx.EventKind) == (
        "started",
        "succeeded",
        "failed",
        "skipped",
        "cancelled",
    )
    executor = typing.get_type_hints(pipeliner_rx.Pipeline.__init__)["executor"]
    assert executor == pipeliner_rx.StepExecutor | None
    assert concurrent.futures.Executor in typing.get_args(pipeliner_rx.StepExecutor)
    pipeline = pipeliner_rx.Pipeline()

    @pipeline.step(provides="x")
    async def x() -> int:
        return 1

    assert isinstance(pipeline.plan("x"), pipeliner_rx.Plan)
    assert pipeliner_rx.Plan.__module__ == "pipeliner_rx"


def test_errors_form_one_hierarchy() -> None:
    for name in pipeliner_rx.exceptions.__all__:
        assert issubclass(getattr(pipeliner_rx.exceptions, name), pipeliner_rx.PipelineError)


def test_module_level_functions_use_the_default_pipeline() -> None:
    default = pipeliner_rx.default_pipeline()

    @pipeliner_rx.step(provides="x")
    async def x() -> int:
        return 1

    assert default.steps == (x,)
    pipeliner_rx.add_environment_resources(y=2)
    assert pipeliner_rx.resource_ready("y") and default.resource_ready("y")


def test_import_is_light() -> None:
    code = (
        "import sys, pipeliner_rx; "
        "print(sorted(m for m in ('dask', 'distributed', 'opentelemetry') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
