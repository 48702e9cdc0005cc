"""The conda environments in envs/: cpu.yaml and gpu.yaml list exactly pyproject.toml's runtime
dependencies, with the same version bounds (torch as the conda package `pytorch`), plus python, pip
and the PyTorch build selector; reduce.yaml (the reduction rules) lists a subset of them with the
same bounds and none of the heavy model packages."""

from __future__ import annotations

import re

import pytest
import tomllib
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

FULL_ENVS = ["cpu", "gpu"]  # every runtime dependency of pyproject.toml
ENVS = [*FULL_ENVS, "reduce"]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda package name
# conda-only packages allowed beside pyproject's dependencies: the interpreter, pip, and the
# metapackages / CUDA stack that select a PyTorch build
EXTRA_OK = {"python", "pip", "pytorch-cpu", "pytorch-gpu", "pytorch-cuda", "cpuonly",
            "cuda-version", "cudatoolkit"}
GPU_SELECTORS = {"pytorch-gpu", "pytorch-cuda"}
# what the reduction environment must not contain (PyPI and conda names), and what the reduction
# and report jobs import
HEAVY = ({"torch", "pytorch", "transformers", "sae-lens", "peft", "trl", "datasets", "gguf"}
         | (EXTRA_OK - {"python", "pip"}))
REDUCE_NEEDS = {"pyarrow", "polars", "numpy", "scipy", "matplotlib", "pyyaml", "jsonschema"}


def pyproject_deps() -> dict[str, SpecifierSet]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps = {}
    for line in data["project"]["dependencies"]:
        req = Requirement(line)
        deps[canonicalize_name(req.name)] = req.specifier
    return deps


def conda_spec(spec: str) -> tuple[str, SpecifierSet | None, str]:
    """`name`, `name=1.2`, `name>=1.2`, `channel::name >=1.2` -> (name, specifier, raw version)."""
    spec = spec.split("::")[-1].strip()
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    name, version = m.group(1), m.group(2).replace(" ", "")
    if not version:
        return canonicalize_name(name), None, ""
    if version.startswith("=") and not version.startswith("=="):
        return canonicalize_name(name), None, version  # conda fuzzy pin, e.g. python=3.11
    return canonicalize_name(name), SpecifierSet(version), version


def env_deps(env: str) -> tuple[dict, dict[str, SpecifierSet]]:
    """(conda packages: name -> (specifier, raw), pip packages: name -> specifier)."""
    data = yaml.safe_load((REPO / "envs" / f"{env}.yaml").read_text())
    conda, pip = {}, {}
    for item in data["dependencies"]:
        if isinstance(item, dict):
            assert set(item) == {"pip"}, f"{env}.yaml: unexpected mapping {item}"
            for line in item["pip"]:
                assert not line.startswith(("-e", "-r", ".")), \
                    f"{env}.yaml: {line!r} (conda env files cannot install the repo)"
                req = Requirement(line)
                name = canonicalize_name(req.name)
                assert name not in pip, f"{env}.yaml: {name} listed twice under pip"
                pip[name] = req.specifier
        else:
            name, spec, raw = conda_spec(str(item))
            assert name not in conda, f"{env}.yaml: {name} listed twice"
            conda[name] = (spec, raw)
    return conda, pip


def load_env(name: str):
    conda, pip = env_deps(name)
    data = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
    return name, data, conda, pip


@pytest.fixture(scope="module", params=ENVS)
def any_env(request):
    return load_env(request.param)


@pytest.fixture(scope="module", params=FULL_ENVS)
def env(request):
    return load_env(request.param)


def test_env_header_and_channels(any_env):
    name, data, conda, _ = any_env
    text = (REPO / "envs" / f"{name}.yaml").read_text()
    assert text.startswith("#") and "pip install" in text and "PYTHONPATH" in text
    assert data["name"] == f"stsflow-{name}"
    assert "conda-forge" in data["channels"]
    assert conda["python"][1] == "=3.11"
    assert "pip" in conda


def test_every_pyproject_dependency_with_the_same_bounds(env):
    name, _, conda, pip = env
    for dep, spec in pyproject_deps().items():
        conda_name = CONDA_NAMES.get(dep, dep)
        if conda_name in conda:
            got = conda[conda_name][0]
            where = "conda"
        elif dep in pip:
            got = pip[dep]
            where = "pip"
        else:
            pytest.fail(f"{name}.yaml: pyproject dependency {dep}{spec} is missing")
        assert got == spec, f"{name}.yaml ({where}): {dep} has {got}, pyproject has {spec}"
        assert not (conda_name in conda and dep in pip), f"{name}.yaml: {dep} both conda and pip"


def test_nothing_beyond_pyproject(env):
    name, _, conda, pip = env
    deps = pyproject_deps()
    allowed = set(deps) | {CONDA_NAMES.get(d, d) for d in deps}
    extra = sorted((set(conda) - allowed - EXTRA_OK) | (set(pip) - set(deps)))
    assert not extra, f"{name}.yaml lists packages that pyproject.toml does not: {extra}"


def test_pytorch_build_matches_the_env(env):
    name, _, conda, pip = env
    assert "pytorch" in conda and "torch" not in pip, "PyTorch must come from conda"
    selectors = set(conda) & (GPU_SELECTORS | {"pytorch-cpu", "cpuonly"})
    if name == "cpu":
        assert selectors and not selectors & GPU_SELECTORS, f"cpu.yaml selects {selectors}"
        assert "cudatoolkit" not in conda and "cuda-version" not in conda
    else:
        assert selectors & GPU_SELECTORS, "gpu.yaml must select a CUDA build of pytorch"


def test_reduce_env_is_a_subset_of_pyproject_with_the_same_bounds():
    _, _, conda, pip = load_env("reduce")
    assert set(conda) == {"python", "pip"}, f"reduce.yaml: conda packages {sorted(conda)}"
    deps = pyproject_deps()
    for dep, spec in pip.items():
        assert dep in deps, f"reduce.yaml: {dep} is not a pyproject dependency"
        assert spec == deps[dep], f"reduce.yaml: {dep} has {spec}, pyproject has {deps[dep]}"


def test_reduce_env_has_no_heavy_packages_and_what_the_reductions_import():
    _, _, conda, pip = load_env("reduce")
    assert not (set(conda) | set(pip)) & HEAVY, \
        f"reduce.yaml lists {sorted((set(conda) | set(pip)) & HEAVY)}"
    assert REDUCE_NEEDS <= set(pip), f"reduce.yaml lacks {sorted(REDUCE_NEEDS - set(pip))}"


def test_every_rule_env_exists():
    """Every environment a rule names (as Snakemake parsed the workflow) is one of envs/, and
    every one of envs/ is used."""
    from workflow_helpers import ALL_RULES, workflow_rules

    named = {r.env.removeprefix("../envs/").removesuffix(".yaml")
             for r in workflow_rules(ALL_RULES).values() if r.env}
    assert named == set(ENVS), f"rules name envs {sorted(named)}, envs/ has {ENVS}"


def test_conda_spec_parser():
    assert conda_spec("pytorch>=2.4") == ("pytorch", SpecifierSet(">=2.4"), ">=2.4")
    assert conda_spec("python=3.11")[::2] == ("python", "=3.11")
    assert conda_spec("conda-forge::pytorch-gpu")[:2] == ("pytorch-gpu", None)
