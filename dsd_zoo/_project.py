"""Where dsd-zoo lives: the one place that names its GitHub repository and its Hugging Face Hub namespace.

Everything that names them reads this module: the torch.hub examples of the model cards
(:mod:`dsd_zoo.model_card`) and of the entry points (:mod:`dsd_zoo.hub`, ``hubconf.py``), and
the defaults of the release tool (:mod:`dsd_zoo.release`). Files that cannot import Python are
held to these values by tests (``tests/test_workflows.py``): the README's torch.hub examples and
the ``hf_repo`` default of ``.github/workflows/publish-weights.yml``.

The values are placeholders until the owner fills in the real ones: change them here, then the
README's torch.hub line and the workflow's ``hf_repo`` default, which the tests name if they
disagree. The publish workflow refuses to upload to a namespace that is still ``<owner>``.
"""

from __future__ import annotations

__all__ = ["GITHUB_REPO", "HF_NAMESPACE", "HF_REPO_ID", "PLACEHOLDER"]

#: What the values below hold until the owner sets them (not a valid GitHub or Hub name).
PLACEHOLDER = "<owner>"

#: ``owner/name`` of the GitHub repository: what ``torch.hub.load`` is given.
GITHUB_REPO = f"{PLACEHOLDER}/dsd"

#: The Hugging Face Hub user or organisation the converted weights are published under.
HF_NAMESPACE = PLACEHOLDER

#: The default Hub repository id for published weights, as ``python -m dsd_zoo.release --repo-id``
#: takes it: ``{name}`` gives every model its own repository (``<namespace>/resnet50_dsd``), whose
#: card is the repository's card.
HF_REPO_ID = f"{HF_NAMESPACE}/{{name}}"
