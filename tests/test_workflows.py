"""The GitHub Actions workflows, and the one place that names the repository.

Checked offline: every workflow validates against the GitHub workflow schema (check-jsonschema's
bundled copy), zizmor finds nothing in them, dispatch inputs reach shell scripts only through
``env:``, permissions are least-privilege, every action is pinned by commit, and the steps that
run dsd-zoo's command-line tools use only options those tools list in ``--help`` (so renaming an
option breaks this test, not the next release). Not checked: that the workflows run on GitHub
(docs/release.md says what the first real run exercises).

``dsd_zoo._project`` names the GitHub repository and the Hub namespace; the files that cannot
import it (the README, the publish workflow's ``hf_repo`` default) are held to its values here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest

from dsd_zoo._project import GITHUB_REPO, HF_REPO_ID

from .conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml")) if WORKFLOWS.is_dir() else []
EXPECTED = {"ci.yml", "publish-weights.yml", "publish-pypi.yml"}

needs_workflows = pytest.mark.skipif(
    not WORKFLOW_FILES, reason=f"{WORKFLOWS} is absent (the source distribution does not carry .github/)"
)


def _tool(command: str, package: str) -> str:
    """The executable ``command`` (next to this Python first, then on PATH), or skip naming its pip package."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(command, path=path)
    if found is None:
        pytest.skip(
            f"{command} is not installed: pip install {package} (it is in the test extra, pip install -e '.[test]')"
        )
    return found


def _offline_env() -> Dict[str, str]:
    """This environment without GitHub tokens, so that no tool is tempted to go online."""
    return {k: v for k, v in os.environ.items() if k not in {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"}}


# -- the tools: schema and zizmor ---------------------------------------------------------------------------------


@needs_workflows
def test_the_workflows_are_there():
    assert EXPECTED <= {path.name for path in WORKFLOW_FILES}


@needs_workflows
@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_workflow_validates_against_the_github_workflow_schema(path):
    tool = _tool("check-jsonschema", "check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        env=_offline_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_workflows
def test_zizmor_finds_nothing():
    tool = _tool("zizmor", "zizmor")
    result = subprocess.run(
        [tool, "--offline", str(WORKFLOWS)], capture_output=True, text=True, env=_offline_env(), timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_workflows
def test_zizmor_would_catch_an_input_spliced_into_a_script(tmp_path):
    # The check above is only worth something if zizmor audits workflows like ours: splice the
    # dispatch input into the release script, as the workflow must never do, and it must object.
    tool = _tool("zizmor", "zizmor")
    text = (WORKFLOWS / "publish-weights.yml").read_text(encoding="utf-8")
    marker = 'read -r -a names <<< "$MODELS"'
    assert marker in text
    broken = tmp_path / ".github" / "workflows" / "publish-weights.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(marker, 'read -r -a names <<< "${{ inputs.models }}"'), encoding="utf-8")
    result = subprocess.run(
        [tool, "--offline", str(broken.parent)], capture_output=True, text=True, env=_offline_env(), timeout=120
    )
    assert result.returncode != 0 and "template-injection" in result.stdout + result.stderr, (
        result.stdout + result.stderr
    )


# -- the workflows, parsed ----------------------------------------------------------------------------------------


def _load(path: Path) -> Dict[str, Any]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is not installed (pip install pyyaml; huggingface_hub normally brings it)"
    )
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _workflow(name: str) -> Dict[str, Any]:
    return _load(WORKFLOWS / name)


def _triggers(document: Dict[str, Any]) -> Dict[str, Any]:
    """The ``on:`` mapping (YAML 1.1 reads the bare key ``on`` as ``True``)."""
    triggers = document.get("on", document.get(True))
    if isinstance(triggers, str):
        return {triggers: None}
    if isinstance(triggers, list):
        return {name: None for name in triggers}
    return triggers


def _strings(node: Any, path: Tuple[Any, ...] = ()) -> Iterator[Tuple[Tuple[Any, ...], str]]:
    """Every string in the document with the keys (and list indices) that lead to it."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, path + (index,))
    elif isinstance(node, str):
        yield path, node


def _steps(document: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    for job_name, job in document["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
INPUT = re.compile(r"\b(?:github\.event\.)?inputs\b")


@needs_workflows
@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_scripts_hold_no_expressions(path):
    # A ${{ }} in a run: script is text spliced into the shell before it runs (template injection).
    # Values reach scripts as environment variables instead.
    for job_name, step in _steps(_load(path)):
        if "run" in step:
            assert "${{" not in step["run"], f"{path.name}, job {job_name}: {step.get('name', step['run'][:60])!r}"


@needs_workflows
@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_dispatch_inputs_appear_only_in_env(path):
    for where, text in _strings(_load(path)):
        for expression in EXPRESSION.findall(text):
            if INPUT.search(expression):
                assert len(where) >= 2 and where[-2] == "env", (
                    f"{path.name}: ${{{{{expression}}}}} at {'.'.join(map(str, where))} is not an env: value"
                )


@needs_workflows
def test_publish_weights_inputs():
    document = _workflow("publish-weights.yml")
    inputs = _triggers(document)["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"models", "hf_repo", "trust_unverified"}
    assert inputs["models"].get("default", "") == ""  # every model that has an original release
    assert inputs["trust_unverified"]["type"] == "boolean" and inputs["trust_unverified"]["default"] is False
    # Each input is used, and (test above) only through env:.
    used = {match for _, text in _strings(document["jobs"]) for match in re.findall(r"inputs\.(\w+)", text)}
    assert used == set(inputs)


@needs_workflows
@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_permissions_are_least_privilege(path):
    # Write access only where it is used: pushing the manifest's branch and opening its pull
    # request, and the OIDC token of PyPI's trusted publishing (on that job alone).
    allowed_writes = {
        ("publish-weights.yml", "pull-request"): {"contents", "pull-requests"},
        ("publish-pypi.yml", "publish"): {"id-token"},
    }
    document = _load(path)
    assert document.get("permissions") == {"contents": "read"}, f"{path.name}: workflow-level permissions"
    for job_name, job in document["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{path.name}, job {job_name}: no explicit permissions mapping"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes == allowed_writes.get((path.name, job_name), set()), f"{path.name}, job {job_name}: {permissions}"
        assert set(permissions.values()) <= {"read", "write", "none"}
        if "id-token" in writes:
            assert permissions == {"id-token": "write"} and job.get("environment"), (
                f"{path.name}, job {job_name}: the OIDC job needs no other scope, and an environment"
            )


USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$")


@needs_workflows
@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_actions_are_pinned_by_commit_with_a_version_comment(path):
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if USES.match(line)]
    assert lines, f"{path.name} uses no action"
    for line in lines:
        action, rest = USES.match(line).groups()
        if action.startswith("./"):
            continue  # an action of this repository: pinned by the checkout itself
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{path.name}: {line.strip()}"
        assert re.fullmatch(r"\s+#\s*v\d+(\.\d+)*\s*", rest), f"{path.name}: no '# vX.Y.Z' comment: {line.strip()}"


@needs_workflows
@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_checkouts_keep_no_credentials(path):
    # The pull-request job pushes with `gh auth setup-git` and GH_TOKEN in that step alone.
    checkouts = [step for _, step in _steps(_load(path)) if str(step.get("uses", "")).startswith("actions/checkout@")]
    for step in checkouts:
        assert (step.get("with") or {}).get("persist-credentials") is False, f"{path.name}: {step}"


@needs_workflows
def test_ci_runs_ci_run_on_python_3_11():
    document = _workflow("ci.yml")
    assert {"push", "pull_request"} <= set(_triggers(document))
    steps = [step for _, step in _steps(document)]
    assert any(step.get("run", "").strip() == "bash .ci/run" for step in steps)
    pythons = [
        step["with"]["python-version"]
        for step in steps
        if str(step.get("uses", "")).startswith("actions/setup-python@")
    ]
    assert pythons == ["3.11"]


@needs_workflows
def test_pypi_workflow_builds_checks_verifies_and_publishes_by_trusted_publishing():
    document = _workflow("publish-pypi.yml")
    assert _triggers(document) == {"push": {"tags": ["v*"]}}
    build = document["jobs"]["build"]
    scripts = "\n".join(step.get("run", "") for step in build["steps"])
    for command in ("python -m build", "twine check", "-m venv", "pip install dist/*.whl", "-m dsd_zoo.verify"):
        assert command in scripts, command
    publish = document["jobs"]["publish"]
    assert publish["needs"] == "build" and publish["environment"]["name"] == "pypi"
    (step,) = [step for step in publish["steps"] if "pypa/gh-action-pypi-publish@" in str(step.get("uses", ""))]
    assert "password" not in (step.get("with") or {})  # trusted publishing: no token anywhere


# -- the steps call the real command-line options -----------------------------------------------------------------

CLI = re.compile(r"-m\s+dsd_zoo\.(\w+)")
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _cli_options(module: str) -> Set[str]:
    """The options in the usage line of ``python -m dsd_zoo.<module> --help`` (argparse lists every one there)."""
    result = subprocess.run(
        [sys.executable, "-m", f"dsd_zoo.{module}", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    usage = result.stdout.split("\n\n", 1)[0]
    assert usage.startswith("usage:"), result.stdout[:200]
    return set(LONG_OPTION.findall(usage))


def _cli_steps(*names: str) -> List[Tuple[str, str, str]]:
    """``(workflow, module, script)`` of every step that runs one of dsd-zoo's command-line tools."""
    found = []
    for name in names:
        for _, step in _steps(_workflow(name)):
            modules = set(CLI.findall(step.get("run", "")))
            assert len(modules) <= 1, f"{name}: one dsd-zoo tool per step, so its options can be checked: {modules}"
            if modules:
                found.append((name, modules.pop(), step["run"]))
    return found


@needs_workflows
def test_steps_use_only_options_the_tools_list():
    # Every long option in a step that runs `python -m dsd_zoo.X` must be one of X's: such a step
    # runs nothing else, so a renamed or removed option fails here.
    steps = _cli_steps("publish-weights.yml", "publish-pypi.yml")
    assert {(name, module) for name, module, _ in steps} >= {
        ("publish-weights.yml", "release"),
        ("publish-weights.yml", "verify"),
        ("publish-pypi.yml", "verify"),
    }
    options = {module: _cli_options(module) for module in {module for _, module, _ in steps}}
    for name, module, script in steps:
        unknown = set(LONG_OPTION.findall(script)) - options[module]
        assert not unknown, f"{name}: python -m dsd_zoo.{module} has no option {sorted(unknown)}"


@needs_workflows
def test_publish_weights_uploads_pins_and_writes_the_manifest():
    (script,) = [script for name, module, script in _cli_steps("publish-weights.yml") if module == "release"]
    used = set(LONG_OPTION.findall(script))
    assert {"--upload", "--repo-id", "--write-manifest", "--trust-unverified", "--torch-hub-repo"} <= used
    assert '--repo-id "$HF_REPO"' in script and "--write-manifest weights_manifest.json" in script
    assert '"$MODELS"' in script  # the names or patterns, unexpanded by the shell (set -f)
    release_job = _workflow("publish-weights.yml")["jobs"]["release"]
    (step,) = [step for step in release_job["steps"] if step.get("run") == script]
    assert step["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"


# -- one place names the repository -------------------------------------------------------------------------------

HUB_CALL = re.compile(r"""torch\.hub\.(?:load|list|help)\(\s*(["'])([^"']*)\1""")


def test_readme_torch_hub_examples_name_the_project_repository():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    named = [match.group(2) for match in HUB_CALL.finditer(readme)]
    assert named, "the README has no torch.hub example"
    assert set(named) == {GITHUB_REPO}, f"README.md names {sorted(set(named))}; dsd_zoo/_project.py: {GITHUB_REPO!r}"


def test_code_reads_the_repository_from_project():
    import hubconf  # the repository root is on sys.path under pytest

    from dsd_zoo import hub, model_card, release

    assert model_card.DEFAULT_TORCH_HUB_REPO == GITHUB_REPO
    assert release.build_parser().get_default("torch_hub_repo") == GITHUB_REPO
    assert {match.group(2) for match in HUB_CALL.finditer(hub.usage())} == {GITHUB_REPO}
    assert {match.group(2) for match in HUB_CALL.finditer(hubconf.__doc__)} == {GITHUB_REPO}
    manifest = hub.load_manifest()
    entry = manifest.models["resnet50_dsd"]
    assert f"torch.hub.load({GITHUB_REPO!r}, 'resnet50_dsd'" in hub.model_docstring(entry, manifest)


def test_no_other_source_file_spells_the_repository():
    spelled = []
    for path in [*REPO_ROOT.glob("dsd_zoo/**/*.py"), REPO_ROOT / "hubconf.py", *REPO_ROOT.glob("docs/*.md")]:
        if path.name != "_project.py" and (
            GITHUB_REPO in path.read_text(encoding="utf-8") or HF_REPO_ID in path.read_text(encoding="utf-8")
        ):
            spelled.append(str(path.relative_to(REPO_ROOT)))
    assert not spelled, f"name the repository through dsd_zoo._project instead: {spelled}"


@needs_workflows
def test_publish_workflow_defaults_to_the_project_hub_repository():
    inputs = _triggers(_workflow("publish-weights.yml"))["workflow_dispatch"]["inputs"]
    assert inputs["hf_repo"]["default"] == HF_REPO_ID
