"""``ferry build``: a self-contained Docker build context for one API or model.

The context holds the Dockerfile, requirements pinned to the versions this environment
runs, a wheel of ferry itself (so the image needs no index that carries ferry), the model
and the predictor code. With ``--image`` and a Docker engine, it is built too.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from ferry.cli.packaging_spec import OUTPUT_MARKER, Options, Package, app_name, package, resolve
from ferry.cli.render import console, output_option, print_json, table
from ferry.config import default_cache_dir, parse_labels
from ferry.errors import ConfigError, FerryError
from ferry.packaging import render_docker_context

__all__ = [
    "MARKER",
    "build",
    "context_files",
    "make_package",
    "output_flags",
    "pinned_requirements",
    "show_files",
    "write_tree",
]

MARKER = OUTPUT_MARKER
Content = str | bytes | Path
# the packages each framework loads with, beyond ferry's own dependencies
_FRAMEWORK_PACKAGES: Mapping[str, tuple[str, ...]] = {
    "pickle": ("scikit-learn", "joblib"),
    "sklearn": ("scikit-learn", "joblib"),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "onnx": ("onnxruntime",),
    "torchscript": ("torch",),
}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


# --- pinned requirements ----------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots: Iterable[str]) -> dict[str, str]:
    """{name: version} of ``roots`` and what they require, as installed here."""
    pins: dict[str, str] = {}
    queue = [(root, frozenset[str]()) for root in roots]
    while queue:
        name, extras = queue.pop()
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: a platform-only or optional dependency
        key = _canonical(dist.metadata["Name"])
        if key in pins and not extras:
            continue
        pins[key] = dist.version
        for line in dist.requires or []:
            requirement, _, marker = line.partition(";")
            wanted = _EXTRA.search(marker)
            if wanted is not None and wanted.group(1) not in extras:
                continue
            match = _REQUIREMENT.match(requirement)
            if match is not None:
                more = frozenset(e.strip() for e in (match.group(2) or "").split(",") if e.strip())
                queue.append((match.group(1), more))
    return pins


def _project_requirements(package: Package) -> list[str]:
    names: list[str] = []
    for served in package.served:
        if served.source.framework != "python":
            names += _FRAMEWORK_PACKAGES.get(served.source.framework, ())
            continue
        root = Path(served.source.spec.python_path or served.source.path.parent)
        file = root / "requirements.txt"
        lines = file.read_text(encoding="utf-8").splitlines() if file.is_file() else []
        for line in lines:
            match = _REQUIREMENT.match(line.split("#")[0])
            if match is not None:
                names.append(match.group(1))
    return names


def pinned_requirements(package: Package) -> tuple[str, ...]:
    """``name==version`` for ferry's dependencies and the model's framework, from here."""
    pins = _closure(["ferry", *_project_requirements(package)])
    pins.pop("ferry", None)
    return tuple(f"{name}=={version}" for name, version in sorted(pins.items()))


# --- ferry itself -----------------------------------------------------------------------


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "ferry"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _source_digest(root: Path) -> str:
    """A digest of what goes into the wheel, so an unchanged checkout reuses its wheel."""
    digest = hashlib.sha256()
    for path in sorted([root / "pyproject.toml", *(root / "src" / "ferry").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ferry_wheel() -> Path | None:
    """A wheel of this checkout (cached by content), or None for an installed ferry."""
    root = _checkout()
    if root is None:
        return None
    out = default_cache_dir().parent / "wheels" / _source_digest(root)
    wheels = sorted(out.glob("ferry-*.whl"))
    if wheels:
        return wheels[0]
    staging = Path(tempfile.mkdtemp(prefix="ferry-wheel-"))
    uv = Path(sys.executable).parent / "uv"
    argv: list[str | Path] = (
        [uv, "build", "--wheel", "--quiet", "--python", sys.executable, "--out-dir", staging, root]
        if uv.exists()
        else [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", staging, root]
    )
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    built = sorted(staging.glob("ferry-*.whl"))
    if result.returncode != 0 or not built:
        raise FerryError(f"cannot build a wheel of ferry from {root}: {result.stderr.strip()}")
    out.mkdir(parents=True, exist_ok=True)
    shutil.move(built[0], out / built[0].name)  # whole file or nothing, for concurrent runs
    shutil.rmtree(staging, ignore_errors=True)
    return out / built[0].name


def make_package(
    target: str, project: Path | None, out: Path, options: Options, *, wheel: bool
) -> Package:
    """Resolve ``target`` and build its spec, pinned to this environment."""
    served, splitter = resolve(target, project, default_cache_dir(), options.outputs())
    splitter_name = target if splitter else None
    draft = package(served, options, splitter_name=splitter_name, exclude=out)
    built = ferry_wheel() if wheel else None
    version = importlib.metadata.version("ferry")
    return package(
        served,
        options,
        splitter_name=splitter_name,
        exclude=out,
        requirements=pinned_requirements(draft),
        local_wheels=(built.name,) if built else (),
        ferry_requirement=f"ferry=={version}",
    )


# --- writing ----------------------------------------------------------------------------


def context_files(pkg: Package, rendered: Mapping[str, str]) -> dict[str, Content]:
    """The rendered files plus model/, code/ and wheels/, as a Docker context lays them out."""
    files: dict[str, Content] = dict(rendered)
    for path, content in pkg.model_dirs[pkg.served[0].name].items():
        files[path if path.startswith("code/") else f"model/{path}"] = content
    wheel = ferry_wheel() if pkg.spec.local_wheels else None
    if wheel is not None:
        files[f"wheels/{wheel.name}"] = wheel
    return files


def prepare_out(out: Path) -> None:
    """Create ``out``, or empty it when ferry wrote it before; refuse anyone else's files."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ConfigError(
                f"{out} is not empty and was not written by ferry; pass --out NEW_DIR"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by ferry build/export; rewritten on every run\n")


def write_tree(out: Path, files: Mapping[str, Content]) -> list[tuple[str, int]]:
    """Write ``files`` under ``out``; (relative path, size) of each, in order."""
    written = []
    for name in sorted(files):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        content = files[name]
        if isinstance(content, Path):
            shutil.copyfile(content, path)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        if name.endswith(".sh"):
            path.chmod(0o755)
        written.append((name, path.stat().st_size))
    return written


def _size(num: int) -> str:
    value = float(num)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{num} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def show_files(
    out: Path, written: list[tuple[str, int]], output: str, extra: dict[str, Any]
) -> None:
    """The files as a table (with a total) or as JSON."""
    if output == "json":
        files = [{"path": str(out / name), "size": size} for name, size in written]
        print_json({"out": str(out), "files": files, **extra})
        return
    rows = [(name, _size(size)) for name, size in written]
    rows.append(("total", _size(sum(size for _, size in written))))
    console().print(table(["FILE", "SIZE"], rows))


# --- flags ------------------------------------------------------------------------------


F = TypeVar("F", bound=Callable[..., Any])


def _labels(_: click.Context, __: click.Parameter, value: str | None) -> dict[int, str] | None:
    if value is None:
        return None
    try:
        return parse_labels(value)
    except ValueError as error:
        raise ConfigError(f"--labels: {error}") from None


def _names(_: click.Context, __: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(n.strip() for n in value.split(",") if n.strip())


def output_flags(function: F) -> F:
    """``--predict-proba``, ``--labels``, ``--feature-names``: what ``ferry serve`` takes,
    written into the model directory's ferry.yaml so the image answers the same way."""
    function = click.option(
        "--feature-names", callback=_names, help="Comma-separated feature names, in order."
    )(function)
    function = click.option(
        "--labels", callback=_labels, help="Class names: '0=wiener dog,1=german shepherd'."
    )(function)
    return click.option(
        "--predict-proba", is_flag=True, default=None, help="Return class probabilities."
    )(function)


# --- docker -----------------------------------------------------------------------------


def docker_available() -> bool:
    """True when a ``docker`` client is on PATH and ``docker info`` reaches an engine."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run([docker, "info"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _docker_build(tag: str, out: Path) -> None:
    if not docker_available():
        click.echo(
            f"no Docker engine is available (`docker info` failed), so no image was built; "
            f"the context in {out} is ready: docker build -t {tag} {out}"
        )
        return
    result = subprocess.run(["docker", "build", "-t", tag, str(out)], check=False)
    if result.returncode != 0:
        raise FerryError(f"docker build -t {tag} {out} failed (exit {result.returncode})")
    click.echo(f"built image {tag}")


@click.command()
@click.argument("target", metavar="API|MODEL")
@click.option("--project", type=click.Path(path_type=Path), help="ferry.yaml or its folder.")
@click.option("--out", type=click.Path(path_type=Path), help="[default: ./build/<name>]")
@click.option(
    "--target", "platform", type=click.Choice(["generic", "sagemaker"]), default="generic",
    show_default=True, help="sagemaker runs as root, as SageMaker requires.",
)  # fmt: skip
@click.option("--image", help="Build the image with this tag (needs a Docker engine).")
@click.option("--name", help="App name (default: the API's name or the model file's stem).")
@output_flags
@output_option
def build(
    target: str,
    project: Path | None,
    out: Path | None,
    platform: Literal["generic", "sagemaker"],
    image: str | None,
    name: str | None,
    output: str,
    **outputs: Any,
) -> None:
    """Write a Docker build context serving API (of a ferry.yaml) or MODEL (a file, a dir).

    The image serves every protocol of `ferry serve`, keeps the SageMaker container
    contract (`serve`, port 8080, /opt/ml/model) and drains on SIGTERM.
    """
    out = out or Path("build") / app_name(name or Path(target.split(":")[0]).stem or target)
    pkg = make_package(target, project, out, Options(name=name, **outputs), wheel=True)
    if pkg.splitter:
        apis = ", ".join(served.name for served in pkg.served)
        raise ConfigError(
            f"{target} is a TrafficSplitter: build each of its APIs ({apis}), or "
            f"`ferry export {target} --target sagemaker` for production variants"
        )
    prepare_out(out)
    written = write_tree(out, context_files(pkg, render_docker_context(pkg.spec, platform)))
    tag = image or pkg.spec.app_name
    show_files(out, written, output, {"image": tag, "app": pkg.spec.app_name})
    if output == "table":
        click.echo(f"\nnext: docker build -t {tag} {out}")
    if image is not None:
        _docker_build(image, out)
