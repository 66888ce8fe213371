"""DSD phase schedules, the shared training loop, and recipe parsing."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dsd_zoo.dsd import DSD, DSDSchedule, Phase
from dsd_zoo.dsd.loop import ErrorRates, count_correct, evaluate, train_epoch, train_phases
from dsd_zoo.dsd.recipe import RecipeError, load_recipe, parse_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def test_standard_schedule_is_dense_sparse_redense_with_lr_x01() -> None:
    s = DSDSchedule.standard(lr=0.1, epochs=(4, 2, 3))
    # The paper: each phase starts at 1/10 of the previous phase's learning rate.
    assert [(p.name, p.kind, p.epochs, p.lr) for p in s] == [
        ("dense", "dense", 4, 0.1),
        ("sparse", "sparse", 2, 0.01),
        ("redense", "dense", 3, 0.001),
    ]
    assert s.total_epochs == 9 and len(s) == 3 and s[1].sparse


def test_repeated_rounds_and_custom_decay() -> None:
    s = DSDSchedule.standard(lr=1.0, epochs=1, lr_decay=0.5, rounds=2)
    assert [p.name for p in s] == ["dense", "sparse", "redense", "sparse2", "redense2"]
    assert [p.lr for p in s] == [1.0, 0.5, 0.25, 0.125, 0.0625]
    with pytest.raises(ValueError, match="5 counts"):
        DSDSchedule.standard(lr=0.1, epochs=(1, 2, 3), rounds=2)
    with pytest.raises(ValueError, match="rounds"):
        DSDSchedule.standard(lr=0.1, epochs=1, rounds=0)


def test_baseline_keeps_epochs_and_rates_but_no_mask() -> None:
    s = DSDSchedule.standard(lr=0.1, epochs=(4, 2, 2))
    b = s.baseline()
    assert [(p.epochs, p.lr) for p in b] == [(p.epochs, p.lr) for p in s]
    assert not any(p.sparse for p in b)


def test_explicit_phases_and_validation() -> None:
    s = DSDSchedule([{"kind": "sparse", "epochs": 2, "lr": 0.01}, {"kind": "dense", "epochs": 1, "lr": 0.001}])
    assert [p.name for p in s] == ["sparse", "redense"]  # pruning a pretrained model directly
    assert DSDSchedule(s.to_list()) == s
    for bad, match in [
        ([], "at least one"),
        ([{"kind": "sprase", "epochs": 1, "lr": 0.1}], "kind"),
        ([{"kind": "dense", "epochs": -1, "lr": 0.1}], "epochs"),
        ([{"kind": "dense", "epochs": 1, "lr": 0}], "lr"),
        ([{"kind": "dense", "epochs": 1, "lr": 0.1, "momentum": 0.9}], "unknown field.*'momentum'"),
        ([{"kind": "dense", "epochs": 1}], "missing"),
        ([Phase("a", "dense", 1, 0.1), Phase("a", "sparse", 1, 0.1)], "unique"),
        ([{"name": "../x", "kind": "dense", "epochs": 1, "lr": 0.1}], "letters"),
    ]:
        with pytest.raises(ValueError, match=match):
            DSDSchedule(bad)


def test_error_rates_count_exactly() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    # Targets: 2 (top-1 hit), 1 (second), 0 (last): one top-1 hit; top-"5" is top-3 with 3 classes.
    counts = count_correct(logits, torch.tensor([2, 1, 0]))
    assert counts.tolist() == [1, 3, 3]
    assert ErrorRates.from_counts(torch.tensor([589, 600, 600])).top1_err == 11 / 600
    # Equal logits rank the higher class first, as in verify (topk returns 8, 6, 7, 5, 9 here).
    assert count_correct(torch.zeros(2, 10), torch.tensor([9, 0])).tolist() == [1, 1, 2]


def _toy_problem(seed: int = 0) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(seed)
    x = torch.randn(64, 6)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    return model, [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]


def test_train_phases_prunes_fixes_mask_and_densifies() -> None:
    model, batches = _toy_problem()
    dsd = DSD(model, sparsity=0.5)
    schedule = DSDSchedule.standard(lr=0.5, epochs=(3, 3, 3))
    seen: list[tuple[str, int, float]] = []
    rates: list[float] = []

    def make_optimizer(phase: Phase) -> torch.optim.Optimizer:
        rates.append(phase.lr)
        return torch.optim.SGD(model.parameters(), lr=phase.lr, momentum=0.9)

    def on_end(result, masks) -> None:
        seen.append((result.phase.name, len(masks), result.sparsity.sparsity))

    results = train_phases(
        schedule,
        dsd,
        make_optimizer=make_optimizer,
        run_epoch=lambda opt, phase, epoch: train_epoch(model, batches, opt),
        evaluate_fn=lambda: evaluate(model, batches),
        on_phase_end=on_end,
    )
    assert rates == [0.5, 0.05, 0.005]
    assert [name for name, _, _ in seen] == ["dense", "sparse", "redense"]
    assert seen[0][1] == 0 and seen[1][1] == 2 and seen[2][1] == 0  # masks only in the sparse phase
    # Sparse stage: round(0.5 * 256) of the middle and round(0.5 * 32) of the last layer are zero.
    assert results[1].sparsity.zeros == 128 + 16
    assert results[2].sparsity.zeros == 0  # re-dense: the pruned weights trained again
    assert all(r.errors.n == 64 for r in results)
    assert results[2].errors.top1_err < 0.2  # a separable toy problem: far below chance (0.5)
    assert not dsd.is_sparse


def test_train_phases_needs_a_dsd_for_sparse_phases() -> None:
    with pytest.raises(ValueError, match="no DSD"):
        train_phases(DSDSchedule.standard(lr=0.1, epochs=1), None, None, None, None)  # type: ignore[arg-type]


def test_recipe_json_and_toml(tmp_path) -> None:
    (tmp_path / "r.json").write_text(
        json.dumps(
            {
                "model": "resnet18",
                "data": {"root": "imgs", "image_size": 32},
                "epochs": [2, 1, 1],
                "lr": 0.1,
                "optimizer": {"name": "adamw", "weight_decay": 0.05},
                "output": "out",
            }
        )
    )
    r = load_recipe(tmp_path / "r.json")
    assert r.data.root == tmp_path / "imgs" and r.output == tmp_path / "out"  # relative to the recipe file
    assert [p.lr for p in r.schedule] == [0.1, 0.01, 0.001] and r.sparsity == 0.3 and r.skip_first
    assert r.optimizer.name == "adamw" and isinstance(
        r.optimizer.build(nn.Linear(2, 2).parameters(), 0.1), torch.optim.AdamW
    )
    (tmp_path / "r.toml").write_text(
        'model = "digits_net"\nsparsity = 0.5\n[data]\nbuiltin = "digits"\n'
        '[[phases]]\nkind = "sparse"\nepochs = 1\nlr = 0.01\n'
    )
    t = load_recipe(tmp_path / "r.toml")
    assert t.data.builtin == "digits" and [p.name for p in t.schedule] == ["sparse"] and t.sparsity == 0.5


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"data": {"builtin": "digits"}, "epochs": 1, "lr": 0.1}, "missing required key 'model'"),
        (
            {"model": "m", "data": {"builtin": "digits"}, "epochs": 1, "lr": 0.1, "spasity": 0.5},
            "did you mean 'sparsity'",
        ),
        ({"model": "m", "data": {"builtin": "digits"}, "epochs": 1, "lr": 0.1, "sparsity": 1.5}, r"\[0, 1\]"),
        ({"model": "m", "data": {"builtin": "digits"}, "epochs": True, "lr": 0.1}, "bad schedule"),
        ({"model": "m", "data": {"builtin": "digits"}, "lr": 0.1}, "'epochs' and 'lr'"),
        (
            {"model": "m", "data": {"builtin": "digits"}, "epoch": 3, "lr": 0.1},
            r"'epochs' and 'lr'.*'epoch' \(did you mean 'epochs'\?\)",
        ),
        ({"model": "m", "data": {"root": "a", "builtin": "digits"}, "epochs": 1, "lr": 0.1}, "exactly one"),
        ({"model": "m", "data": {"builtin": "mnist"}, "epochs": 1, "lr": 0.1}, "builtin"),
        ({"model": "m", "data": {"root": "a", "channels": 1}, "epochs": 1, "lr": 0.1}, "mean and std"),
        ({"model": "m", "data": {"builtin": "digits"}, "epochs": 1, "lr": 0.1, "batch_size": 0}, ">= 1"),
        ({"model": "m", "data": {"builtin": "digits"}, "epochs": 1, "lr": 0.1, "optimizer": {"name": "lbfgs"}}, "sgd"),
        (
            {
                "model": "m",
                "data": {"builtin": "digits"},
                "lr": 0.1,
                "epochs": 1,
                "phases": [{"kind": "dense", "epochs": 1, "lr": 0.1}],
            },
            "not both",
        ),
    ],
)
def test_recipe_errors_name_the_problem(raw, match) -> None:
    with pytest.raises(RecipeError, match=match):
        parse_recipe(raw)


def test_unreadable_recipe(tmp_path) -> None:
    with pytest.raises(RecipeError, match="cannot read"):
        load_recipe(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{model: 1")
    with pytest.raises(RecipeError, match="not valid JSON"):
        load_recipe(tmp_path / "bad.json")
