"""Site profiles: which backend a site uses, its shape, and how the controller polls it.

A site profile is a YAML file in ``site_configs/`` (or any path)::

    backend: local          # local | slurm | lsf | custom
    max_concurrent_trials: 1
    poll_interval_s: 30
    local: {ranks_per_job: 2, timeout_min: 60}

Common keys are read here; the backend section is parsed by the backend's module.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.base import Backend
from launch.config import ConfigError, Section, load_section

_COMMON_KEYS = {
    "backend": "required: local, slurm, lsf or custom",
    "description": "free text",
    "max_concurrent_trials": "default 1",
    "poll_interval_s": "default 30",
    "result_grace_s": "default 120",
    "max_retries": "default 2",
    "gpu_memory_gb": "default none",
}
_BACKENDS = ("local", "slurm", "lsf", "custom")
SITE_DIR_ENV = "SPLINE_NAS_SITE_DIR"


@dataclass(frozen=True)
class SiteProfile:
    """A parsed site profile; ``backend_profile`` is the backend's own frozen dataclass."""

    name: str
    source: str
    backend: str
    backend_profile: Any
    max_concurrent_trials: int = 1
    poll_interval_s: float = 30.0
    result_grace_s: float = 120.0
    max_retries: int = 2
    gpu_memory_gb: float | None = None


@dataclass(frozen=True)
class CustomProfile:
    """A backend class named as ``module:Class``, built with ``options`` as keywords.

    Sites with a scheduler this package does not support plug in their own
    :class:`launch.base.Backend` this way; the tests use it for a fast fake launcher.
    """

    class_path: str
    options: dict[str, Any]

    @classmethod
    def from_section(cls, section: Section) -> CustomProfile:
        section.check_keys(
            {"class": "required, module:Class", "options": "keyword arguments"},
            required=("class",),
        )
        class_path = section.get_str("class", required=True)
        if class_path.count(":") != 1:
            raise section.error("class", f"expected 'module:Class', got {class_path!r}")
        options_section = section.get_section("options", required=False)
        options = {}
        if options_section is not None:
            options = {key: options_section.scalar_value(key) for key in options_section.keys()}
        return cls(class_path, options)

    def load_class(self) -> type[Backend]:
        module_name, class_name = self.class_path.split(":")
        module = importlib.import_module(module_name)
        backend_class = getattr(module, class_name, None)
        if not (isinstance(backend_class, type) and issubclass(backend_class, Backend)):
            raise ConfigError(
                self.class_path, None, "custom.class", "is not a launch.base.Backend subclass"
            )
        return backend_class


def _site_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(SITE_DIR_ENV):
        dirs.append(Path(os.environ[SITE_DIR_ENV]))
    dirs.append(Path.cwd() / "site_configs")
    dirs.append(Path(__file__).resolve().parents[1] / "site_configs")
    return dirs


def find_site_file(name_or_path: str) -> Path:
    """Resolve ``--site`` to a file: a path, or a name looked up in the site directories."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if candidate.is_file():
            return candidate
        raise ConfigError(name_or_path, None, "", "site profile file not found; check the path")
    searched = []
    for directory in _site_dirs():
        path = directory / f"{name_or_path}.yaml"
        searched.append(str(directory))
        if path.is_file():
            return path
    raise ConfigError(
        name_or_path,
        None,
        "",
        f"no site profile named {name_or_path!r} in {', '.join(searched)}; "
        f"pass a path to a YAML file or set {SITE_DIR_ENV}",
    )


def _positive(section: Section, key: str, value: float | int | None) -> None:
    if value is not None and value <= 0:
        raise section.error(key, f"must be positive, got {value}")


def parse_site(section: Section, name: str) -> SiteProfile:
    """Validate a site profile's common keys and its backend section."""
    allowed = dict(_COMMON_KEYS)
    allowed.update({backend: f"{backend} settings" for backend in _BACKENDS})
    section.check_keys(allowed, required=("backend",))
    backend = section.get_str("backend", required=True)
    if backend not in _BACKENDS:
        raise section.error(
            "backend", f"unknown backend {backend!r}; use one of {', '.join(_BACKENDS)}"
        )
    for other in _BACKENDS:
        if other != backend and other in section:
            raise section.error(other, f"section '{other}' does not apply to backend '{backend}'")
    backend_section = section.get_section(backend, required=backend != "local")
    backend_profile = _parse_backend(backend, backend_section, section)
    values: dict[str, Any] = {
        "max_concurrent_trials": section.get_int("max_concurrent_trials", 1),
        "poll_interval_s": section.get_float("poll_interval_s", 30.0),
        "result_grace_s": section.get_float("result_grace_s", 120.0),
        "max_retries": section.get_int("max_retries", 2),
        "gpu_memory_gb": section.get_float("gpu_memory_gb", None),
    }
    for key, value in values.items():
        if key != "max_retries":
            _positive(section, key, value)
    if values["max_retries"] < 0:
        raise section.error("max_retries", f"must be 0 or more, got {values['max_retries']}")
    return SiteProfile(
        name=name,
        source=section.source,
        backend=backend,
        backend_profile=backend_profile,
        **values,
    )


def _parse_backend(backend: str, section: Section | None, root: Section) -> Any:
    if backend == "local":
        from launch.local import LocalProfile

        return LocalProfile.from_section(section)
    if backend == "slurm":
        from launch.slurm import SlurmProfile

        return SlurmProfile.from_section(section)
    if backend == "custom":
        return CustomProfile.from_section(section)
    from launch.lsf import LsfProfile

    return LsfProfile.from_section(section)


def load_site(name_or_path: str) -> SiteProfile:
    """Find, read and validate a site profile."""
    path = find_site_file(name_or_path)
    return parse_site(load_section(path), Path(path).stem)


def make_backend(site: SiteProfile) -> Backend:
    """Instantiate the backend a site profile names."""
    if site.backend == "local":
        from launch.local import LocalBackend

        return LocalBackend(site.backend_profile)
    if site.backend == "slurm":
        from launch.slurm import SlurmBackend

        return SlurmBackend(site.backend_profile)
    if site.backend == "custom":
        profile = site.backend_profile
        return profile.load_class()(**profile.options)
    from launch.lsf import LsfBackend

    return LsfBackend(site.backend_profile)
