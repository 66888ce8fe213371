"""DSD pruning: which weights, how many, and that they stay pruned through any optimizer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from dsd_zoo.dsd import (
    DSD,
    DSDStateError,
    load_checkpoint,
    load_masks,
    magnitude_mask,
    read_metadata,
    save_checkpoint,
    save_masks,
)
from dsd_zoo.errors import FormatError, WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")


class SmallNet(nn.Module):
    # Odd sizes on purpose: 0.3 * numel is rarely an integer, so the rounding rule matters.
    # Tanh, not ReLU: no unit dies during the long optimizer tests, so every weight keeps a gradient.
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Conv2d(4, 5, 3), nn.Tanh())
        self.classifier = nn.Sequential(nn.Linear(5 * 2 * 2, 7), nn.Tanh(), nn.Linear(7, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


PRUNED = ["features.2.weight", "classifier.0.weight", "classifier.2.weight"]


def make_net(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet()


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for i in range(steps):
        x, y = batch(i)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def pruned_values(model: nn.Module, masks: dict[str, torch.Tensor]) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[name].detach()[~mask] for name, mask in masks.items()])


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.3, 0.5, 0.77, 1.0])
def test_exact_count_and_same_choice_as_l1_unstructured(sparsity: float) -> None:
    model = make_net()
    reference = copy.deepcopy(model)
    masks = DSD(model, sparsity=sparsity).prune()
    assert list(masks) == PRUNED
    modules = dict(reference.named_modules())
    for name, mask in masks.items():
        module = modules[name.rsplit(".", 1)[0]]
        torch_prune.l1_unstructured(module, "weight", amount=sparsity)
        # The count is round(amount * numel), Python's round: torch/nn/utils/prune.py,
        # _compute_nparams_toprune.
        assert int((~mask).sum()) == round(sparsity * mask.numel())
        assert torch.equal(mask, module.weight_mask.bool())


def test_ties_are_broken_like_l1_unstructured() -> None:
    # Magnitudes drawn from {0, 1, 2} with both signs: hundreds of ties around the threshold.
    g = torch.Generator().manual_seed(3)
    layer = nn.Linear(40, 30)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-2, 3, layer.weight.shape, generator=g).float())
    reference = copy.deepcopy(layer)
    torch_prune.l1_unstructured(reference, "weight", amount=0.3)
    mask = magnitude_mask(layer.weight, 0.3)
    assert torch.equal(mask, reference.weight_mask.bool())
    assert int((~mask).sum()) == round(0.3 * 1200)  # 360, exact


def test_rounding_is_half_to_even_like_torch() -> None:
    # 0.5 * 5 = 2.5 rounds to 2, 0.5 * 7 = 3.5 to 4 (Python round, as torch's pruning uses).
    assert int((~magnitude_mask(torch.randn(5), 0.5)).sum()) == 2
    assert int((~magnitude_mask(torch.randn(7), 0.5)).sum()) == 4


def test_first_conv_and_biases_untouched_and_names_unchanged() -> None:
    model = make_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dsd = DSD(model, sparsity=0.5)
    dsd.prune()
    after = model.state_dict()
    assert list(after) == list(before)  # no weight_orig / weight_mask re-parametrisation
    assert torch.equal(after["features.0.weight"], before["features.0.weight"])
    for key in before:
        if key.endswith("bias"):
            assert torch.equal(after[key], before[key])
    report = dsd.report()
    assert report["features.0.weight"].status == "first layer"
    assert report["features.0.weight"].zeros == 0
    # The state dict loads strictly into the plain architecture.
    SmallNet().load_state_dict(after, strict=True)


def test_skip_first_false_prunes_the_first_conv() -> None:
    dsd = DSD(make_net(), sparsity=0.3, skip_first=False)
    assert dsd.layer_names == ["features.0.weight", *PRUNED]


def test_exclude_by_name_and_type() -> None:
    assert DSD(make_net(), exclude=["classifier"]).layer_names == ["features.2.weight"]
    assert DSD(make_net(), exclude=[nn.Linear]).layer_names == ["features.2.weight"]
    assert DSD(make_net(), exclude=["classifier.2"]).layer_names == PRUNED[:2]
    with pytest.raises(ValueError, match="match no module"):
        DSD(make_net(), exclude=["clasifier"])
    with pytest.raises(ValueError, match="no layer"):
        DSD(make_net(), exclude=[nn.Conv2d, nn.Linear])


def test_invalid_sparsity() -> None:
    for bad in (-0.1, 1.5, "0.3", True):
        with pytest.raises(ValueError):
            DSD(make_net(), sparsity=bad)  # type: ignore[arg-type]


OPTIMIZERS = {
    "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2),
    "sgd-nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adam-amsgrad-foreach": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True, foreach=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero_then_revive(name: str) -> None:
    model = make_net()
    optimizer = OPTIMIZERS[name](model.parameters())
    # Dense steps first, so the optimizer carries momentum / moments for soon-pruned weights:
    # the state in which a mask applied before step() is undone by the update.
    train_steps(model, optimizer, 5)
    dsd = DSD(model, sparsity=0.3)
    handle = dsd.attach(optimizer)
    masks = dsd.prune()
    kept_before = {n: p.detach().clone() for n, p in model.named_parameters() if n in masks}
    train_steps(model, optimizer, 200)
    assert torch.count_nonzero(pruned_values(model, masks)) == 0
    for n, p in model.named_parameters():
        if n in masks:
            assert not torch.equal(p.detach()[masks[n]], kept_before[n][masks[n]]), "kept weights must train"
            for value in optimizer.state[p].values():
                if value.shape == p.shape:  # momentum / moments of pruned weights are empty
                    assert torch.count_nonzero(value[~masks[n]]) == 0
    assert dsd.report().sparsity > 0

    dsd.densify()
    assert not handle.attached
    assert torch.count_nonzero(pruned_values(model, masks)) == 0  # restart at exactly zero
    train_steps(model, optimizer, 3)
    revived = pruned_values(model, masks)
    # Every one comes back: with Tanh units no gradient is exactly zero.
    assert torch.count_nonzero(revived) == revived.numel()


def test_a_mask_applied_before_step_is_undone_by_momentum() -> None:
    # The bug DSD's hooks prevent, shown with the same setup: re-zeroing the weights *before*
    # each step leaves them non-zero after it. If this ever stops failing, the test above proves
    # nothing about momentum.
    model = make_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
    train_steps(model, optimizer, 5)
    masks = DSD(model, sparsity=0.3).compute_masks()
    params = dict(model.named_parameters())
    for i in range(20):
        x, y = batch(i)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for n, mask in masks.items():
                params[n].mul_(mask)
        optimizer.step()
    assert torch.count_nonzero(pruned_values(model, masks)) > 0


class _DriftingSGD(torch.optim.SGD):
    """SGD that also moves every parameter by a constant: an update that ignores the gradient
    (as a user's custom optimizer, EMA write-back or noise injection may)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for param in group["params"]:
                param.add_(1e-3)
        return loss


def test_pruned_weights_stay_zero_even_when_the_update_ignores_the_gradient() -> None:
    # Zeroed gradients alone would not hold them: only re-applying the mask after the step does.
    model = make_net()
    optimizer = _DriftingSGD(model.parameters(), lr=0.05, momentum=0.9)
    dsd = DSD(model, sparsity=0.3)
    masks = dsd.prune()
    with dsd.attach(optimizer):
        train_steps(model, optimizer, 10)
    assert torch.count_nonzero(pruned_values(model, masks)) == 0


def test_attach_before_prune_and_state_checks() -> None:
    model = make_net()
    dsd = DSD(model, sparsity=0.3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with dsd.attach(optimizer):
        train_steps(model, optimizer, 3)  # dense: the hooks are inert
        masks = dsd.prune()
        train_steps(model, optimizer, 20)
        assert torch.count_nonzero(pruned_values(model, masks)) == 0
        with pytest.raises(DSDStateError):
            dsd.prune()
    dsd.densify()
    with pytest.raises(DSDStateError):
        dsd.densify()
    with pytest.raises(ValueError, match="none of the weights"):
        dsd.attach(torch.optim.SGD(make_net().parameters(), lr=0.1))


def test_second_round_recomputes_the_mask_from_current_weights() -> None:
    model = make_net()
    dsd = DSD(model, sparsity=0.3)
    first = dsd.prune()
    dsd.densify()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    train_steps(model, optimizer, 10)
    second = dsd.prune()
    assert any(not torch.equal(first[n], second[n]) for n in first)


def test_given_masks_are_validated() -> None:
    dsd = DSD(make_net(), sparsity=0.3)
    masks = dsd.compute_masks()
    with pytest.raises(WeightsError, match="missing"):
        dsd.prune({k: v for k, v in masks.items() if k != PRUNED[0]})
    with pytest.raises(WeightsError, match="shape"):
        dsd.prune({**masks, PRUNED[0]: masks[PRUNED[0]].flatten()})
    with pytest.raises(WeightsError, match="0 and 1"):
        dsd.prune({**masks, PRUNED[0]: masks[PRUNED[0]].to(torch.uint8) * 2})
    applied = dsd.prune({k: v.to(torch.uint8) for k, v in masks.items()})
    assert all(torch.equal(applied[k], masks[k]) for k in masks)


def test_ddp_style_wrapper_is_unwrapped() -> None:
    model = make_net()
    assert DSD(nn.DataParallel(model)).layer_names == PRUNED


def test_report_totals_and_table() -> None:
    model = make_net()
    dsd = DSD(model, sparsity=0.3)
    dsd.prune()
    report = dsd.report()
    sizes = {"features.0.weight": 108, "features.2.weight": 180, "classifier.0.weight": 140, "classifier.2.weight": 21}
    assert {layer.name: layer.numel for layer in report.layers} == sizes
    # round(0.3 * n) per pruned layer: 54 + 42 + 6 (21 * 0.3 = 6.3), conv1 dense.
    assert report.zeros == 54 + 42 + 6
    assert report.sparsity == pytest.approx(102 / 449)
    table = str(report)
    assert "features.0.weight" in table and "first layer" in table and "22.72%" in table
    assert report.to_dict()["layers"]["classifier.2.weight"]["zeros"] == 6


def test_masks_round_trip_and_validation(tmp_path) -> None:
    model = make_net()
    masks = DSD(model, sparsity=0.3).prune()
    path = save_masks(tmp_path / "m.safetensors", masks, metadata={"stage": "sparse"})
    loaded = load_masks(path)
    assert set(loaded) == set(masks) and all(torch.equal(loaded[k], masks[k]) for k in masks)
    meta = read_metadata(path)
    assert meta["stage"] == "sparse" and meta["format"] == "dsd_zoo.dsd.masks"
    assert '"pruned": 54' in meta["sparsity"]  # round(0.3 * 180)

    from safetensors.torch import save_file

    # A mask file whose tensors disagree with its declared sparsity is refused.
    tampered = {k: v.clone() for k, v in loaded.items()}
    tampered[PRUNED[0]].view(-1)[torch.nonzero(~tampered[PRUNED[0]].view(-1))[0]] = True
    save_file(tampered, tmp_path / "t.safetensors", metadata=meta)
    with pytest.raises(FormatError, match="declares"):
        load_masks(tmp_path / "t.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(FormatError):
        load_masks(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="reserved"):
        save_masks(tmp_path / "x.safetensors", masks, metadata={"sparsity": "1"})


def test_checkpoint_round_trip_into_plain_architecture(tmp_path) -> None:
    model = make_net()
    dsd = DSD(model, sparsity=0.3)
    masks = dsd.prune()
    path = save_checkpoint(tmp_path / "sparse.safetensors", model, masks=masks, metadata={"stage": "sparse"})

    from safetensors.torch import load_file, save_file

    plain = SmallNet()
    plain.load_state_dict(load_file(path), strict=True)  # no dsd-zoo needed to read it
    fresh = SmallNet()
    meta = load_checkpoint(path, fresh)
    assert meta["stage"] == "sparse"
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))

    # Declared sparse but holding fewer zeros than declared: refused.
    tensors = load_file(path)
    tensors[PRUNED[0]] = torch.ones_like(tensors[PRUNED[0]])
    save_file(tensors, tmp_path / "bad.safetensors", metadata=read_metadata(path))
    with pytest.raises(FormatError, match="zeros"):
        load_checkpoint(tmp_path / "bad.safetensors", SmallNet())
    with pytest.raises(WeightsError, match="missing"):
        load_checkpoint(path, nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(FormatError, match="expected"):
        load_checkpoint(save_masks(tmp_path / "m.safetensors", masks), SmallNet())


def test_written_files_are_byte_for_byte_reproducible(tmp_path) -> None:
    # safetensors itself writes metadata in hash-map order, different on every write; digests of
    # released files must not depend on it.
    model = make_net()
    masks = DSD(model, sparsity=0.3).prune()
    meta = {f"key{i}": str(i) for i in range(8)}
    blobs = {save_checkpoint(tmp_path / f"c{i}.safetensors", model, masks, meta).read_bytes() for i in range(5)}
    assert len(blobs) == 1
    assert len({save_masks(tmp_path / f"m{i}.safetensors", masks, meta).read_bytes() for i in range(5)}) == 1
    fresh = SmallNet()
    assert load_checkpoint(tmp_path / "c0.safetensors", fresh)["key7"] == "7"


# -- models the mask could silently miss (found by a review; each failed before its fix) ----------


def test_a_replaced_layer_is_an_error_not_a_silently_unmasked_one() -> None:
    model = make_net()
    dsd = DSD(model, sparsity=0.3)
    model.classifier[2] = nn.Linear(7, 3)  # the old weight is what the DSD holds
    with pytest.raises(DSDStateError, match="classifier.2.weight is no longer the tensor"):
        dsd.prune()
    fresh = make_net()
    dsd = DSD(fresh, sparsity=0.3)
    fresh.load_state_dict(make_net(1).state_dict(), assign=True)  # new tensors under the same names
    with pytest.raises(DSDStateError, match="create a new DSD"):
        dsd.report()


@pytest.mark.parametrize("wrap", ["parametrizations.weight_norm", "spectral_norm", "sparse embedding", "lstm"])
def test_an_included_layer_that_cannot_be_pruned_is_named(wrap: str) -> None:
    model = make_net()
    include: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
    if wrap == "parametrizations.weight_norm":
        nn.utils.parametrizations.weight_norm(model.classifier[0])
        reason = "parametrization"
    elif wrap == "spectral_norm":
        nn.utils.parametrizations.spectral_norm(model.classifier[0])
        reason = "parametrization"
    elif wrap == "sparse embedding":
        model.classifier[0] = nn.Embedding(10, 4, sparse=True)
        include, reason = (nn.Conv2d, nn.Linear, nn.Embedding), "sparse gradients"
    else:
        model.classifier[0] = nn.LSTM(4, 4)
        include, reason = (nn.Conv2d, nn.Linear, nn.LSTM), "no 'weight' parameter"
    with pytest.raises(ValueError, match=f"cannot prune classifier.0: .*{reason}.*exclude it"):
        DSD(model, sparsity=0.3, include=include)
    dsd = DSD(model, sparsity=0.3, include=include, exclude=["classifier.0"])  # excluded: fine
    assert dsd.layer_names == ["features.2.weight", "classifier.2.weight"]


def test_skip_first_means_the_first_layer_even_when_it_is_parametrized() -> None:
    model = make_net()
    nn.utils.parametrizations.weight_norm(model.features[0])
    dsd = DSD(model, sparsity=0.3)  # the first conv stays dense as the first layer; the second is pruned
    assert dsd.layer_names == PRUNED


def test_excluding_either_user_of_a_tied_weight_keeps_it_dense() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6), nn.Linear(6, 2))
    model[4].weight = model[2].weight
    dsd = DSD(model, sparsity=0.5, exclude=["4"])
    assert dsd.layer_names == ["5.weight"]
    statuses = {layer.name: layer.status for layer in dsd.report().layers}
    assert statuses["2.weight"] == "excluded"
    dsd.prune()
    assert int((model[2].weight == 0).sum()) == 0


def test_a_closure_step_leaves_no_gradient_or_state_at_pruned_positions() -> None:
    model = make_net()
    dsd = DSD(model, sparsity=0.3)
    masks = dsd.prune()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    dsd.attach(optimizer)
    params = dict(model.named_parameters())
    for i in range(3):
        x, y = batch(i)

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:  # bound now, called now
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        optimizer.step(closure)
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name].detach()[~mask]) == 0
        assert torch.count_nonzero(params[name].grad[~mask]) == 0
        assert torch.count_nonzero(optimizer.state[params[name]]["momentum_buffer"][~mask]) == 0


def test_checkpoints_look_through_compile_and_ddp_style_wrappers(tmp_path) -> None:
    model = make_net()
    dsd = DSD(model, sparsity=0.3)
    masks = dsd.prune()
    wrapped = nn.DataParallel(model)  # names gain "module.", as under DDP
    path = save_checkpoint(tmp_path / "w.safetensors", wrapped, masks=masks)
    assert load_checkpoint(path, make_net(1))["format"]  # loads into the plain architecture
    plain = make_net(2)
    load_checkpoint(path, nn.DataParallel(plain))
    assert torch.equal(plain.classifier[2].weight, model.classifier[2].weight)


def test_a_checkpoint_with_wrong_sparsity_metadata_is_a_format_error(tmp_path) -> None:
    import json

    from dsd_zoo.atomic import write_safetensors

    model = make_net()
    dsd = DSD(model, sparsity=0.3)
    path = save_checkpoint(tmp_path / "w.safetensors", model, masks=dsd.prune())
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    metadata = read_metadata(path)
    table = json.loads(metadata["sparsity"])
    table["classifier.2.weight"]["numel"] = 999
    bad = write_safetensors(tmp_path / "numel.safetensors", tensors, {**metadata, "sparsity": json.dumps(table)})
    with pytest.raises(FormatError, match="declares 999 elements for 'classifier.2.weight', which has 21"):
        load_checkpoint(bad, make_net())
    nested = write_safetensors(
        tmp_path / "nested.safetensors", tensors, {**metadata, "sparsity": "[" * 100_000 + "]" * 100_000}
    )
    with pytest.raises(FormatError, match="not usable JSON"):
        load_checkpoint(nested, make_net())
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        load_checkpoint(tmp_path, make_net())


def test_an_epoch_that_raises_leaves_no_optimizer_hooked() -> None:
    from dsd_zoo.dsd import DSDSchedule
    from dsd_zoo.dsd.loop import train_phases

    model = make_net()
    dsd = DSD(model, sparsity=0.3)

    def failing_epoch(optimizer, phase, epoch):
        raise RuntimeError("out of data")

    with pytest.raises(RuntimeError, match="out of data"):
        train_phases(
            DSDSchedule.standard(lr=0.1, epochs=1),
            dsd,
            make_optimizer=lambda phase: torch.optim.SGD(model.parameters(), lr=phase.lr),
            run_epoch=failing_epoch,
            evaluate_fn=lambda: None,
        )
    assert "optimizers=0" in repr(dsd)
