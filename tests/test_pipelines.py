"""The pipeline registry: every use of a pipeline name is a lookup in dsd_zoo.pipelines.PIPELINES."""

from __future__ import annotations

import re

import pytest
import torch

from dsd_zoo.fingerprint import probe_id
from dsd_zoo.manifest import load_manifest
from dsd_zoo.pipelines import IMAGENET_PIPELINES, PIPELINES

from .conftest import REPO_ROOT


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_each_pipeline_builds_describes_and_probes_its_manifest_models(name, isolated_cache):
    pipeline = PIPELINES[name]
    entries = [e for e in load_manifest().models.values() if e.transforms["pipeline"] == name]
    assert entries, f"no manifest model uses the {name} pipeline"
    for entry in entries:
        spec = entry.transforms
        assert set(spec) <= pipeline.fields
        mean = torch.zeros(3, *spec.get("resize", (0, 0))) if "mean_image" in spec else None
        transform = pipeline.build(spec, mean_image=lambda mean=mean: mean)
        assert transform.pipeline_key[0] == name  # verify groups models by this key
        assert f"{spec['crop']}" in pipeline.describe(spec)
    assert probe_id(pipeline.probe, 8)  # a distribution the fingerprint knows
    assert (name in IMAGENET_PIPELINES) == pipeline.decodes_photos


def test_no_module_switches_on_a_pipeline_name():
    # Adding a pipeline means adding one class to dsd_zoo/pipelines.py: no other module compares
    # a transforms record's pipeline with a name.
    switch = re.compile(r"""\[["']pipeline["']\]\s*[!=]=|pipeline\s*[!=]=\s*["']""")
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path in sorted((REPO_ROOT / "dsd_zoo").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if switch.search(line)
    ]
    assert offenders == []
