"""Dense-Sparse-Dense pruning of a model's weights, done the way the paper describes.

Han et al., "DSD: Dense-Sparse-Dense Training for Deep Neural Networks" (ICLR 2017,
arXiv 1607.04381): after dense training, each layer's smallest-magnitude weights are removed
(per layer, to a fixed sparsity; the first convolution is left dense), the network is trained
with that mask **fixed** (re-applied after every update), then the pruned weights come back,
restarting at zero, and the whole network is trained again.

Three mistakes common in public implementations are ruled out by construction here:

* the mask is computed **once** per sparse phase (:meth:`DSD.prune`), never recomputed per epoch;
* it is enforced **after** every ``optimizer.step()`` (a step post-hook) and the gradients of
  pruned weights are zeroed **before** it (a step pre-hook), so momentum, weight decay and Adam
  moments cannot revive pruned weights;
* only weights are pruned, never biases, and parameters keep their names (no ``weight_orig``
  re-parametrisation), so every state dict loads into the plain architecture.

:meth:`DSD.report` counts the zeros of every weight it considers, per layer and in total
(:class:`SparsityReport`, as data and as a printable table).

Optimizer state
    When a mask takes effect (:meth:`DSD.prune` with optimizers attached, or :meth:`DSD.attach`
    on a sparse model) the entries of every optimizer-state tensor shaped like a pruned weight
    (SGD ``momentum_buffer``, Adam ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``, ...) are set to
    zero at the pruned positions. With zero gradients and zero weights they then stay exactly
    zero for the whole sparse phase (``0 * momentum + 0 = 0``; decoupled weight decay of 0 is 0),
    so at :meth:`DSD.densify` the revived weights start from zero *and* with empty optimizer
    memory, like freshly added weights. ``densify`` zeroes them once more, which is a no-op
    unless someone wrote into the optimizer state meanwhile (e.g. ``load_state_dict``). The one
    thing that cannot be reset per entry is Adam's ``step`` counter, which PyTorch keeps per
    tensor: revived entries get a bias correction of ~1 on their first steps, so their first
    Adam updates are up to ``sqrt(1 - beta2) / (1 - beta1)`` (about 3x at the defaults) larger
    than a fresh Adam's. Creating a new optimizer per phase, as :mod:`dsd_zoo.train` does, avoids
    that entirely.

    Two kinds of state do not follow this rule: state seeded with constants rather than
    gradients (Rprop's per-weight ``step_size``, Adamax's ``exp_inf``, which adds ``eps``) becomes
    non-zero at pruned positions during the sparse phase, and zeroing it at ``densify`` leaves an
    Rprop step size of 0; and ``step(closure)`` (LBFGS, or any optimizer called with a closure)
    computes its gradients after the pre-hook, so the post-hook clears the pruned gradients and
    state after such a step instead, and LBFGS's inner evaluations see the pruned weights move
    before they are zeroed again. Neither revives a pruned weight, which the post-hook zeroes
    after every step; a fresh optimizer per phase avoids both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor, nn

from dsd_zoo.errors import DSDStateError, TrainingError, WeightsError

__all__ = ["DSD", "DSDHandle", "DSDStateError", "LayerSparsity", "SparsityReport", "magnitude_mask"]


@dataclass(frozen=True)
class LayerSparsity:
    """The zeros of one weight tensor.

    ``status`` is ``"pruned"`` (DSD manages it), ``"first layer"`` (left dense by
    ``skip_first``) or ``"excluded"``.
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    zeros: int
    status: str

    @property
    def sparsity(self) -> float:
        """Fraction of the weights that are exactly zero."""
        return self.zeros / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """Sparsity of every weight a :class:`~dsd_zoo.dsd.DSD` considers, and of all of them together.

    ``str(report)`` is a table; :meth:`to_dict` a JSON-ready dict.
    """

    layers: tuple[LayerSparsity, ...]
    target: float

    @property
    def numel(self) -> int:
        """Weights counted, over all layers."""
        return sum(layer.numel for layer in self.layers)

    @property
    def zeros(self) -> int:
        """Weights that are exactly zero, over all layers."""
        return sum(layer.zeros for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights over all layers, including those left dense."""
        return self.zeros / self.numel if self.numel else 0.0

    def __getitem__(self, name: str) -> LayerSparsity:
        by_name = {layer.name: layer for layer in self.layers}
        if name not in by_name:
            raise KeyError(f"no layer {name!r}; layers are {list(by_name)}")
        return by_name[name]

    def to_dict(self) -> dict[str, Any]:
        """``{"target", "total": {...}, "layers": {name: {...}}}``, every value JSON-serialisable."""
        return {
            "target": self.target,
            "total": {"numel": self.numel, "zeros": self.zeros, "sparsity": self.sparsity},
            "layers": {
                layer.name: {
                    "shape": list(layer.shape),
                    "numel": layer.numel,
                    "zeros": layer.zeros,
                    "sparsity": layer.sparsity,
                    "status": layer.status,
                }
                for layer in self.layers
            },
        }

    def __str__(self) -> str:
        rows = [
            ("layer", "shape", "weights", "zeros", "sparsity", "status"),
            *(
                (
                    layer.name,
                    "x".join(map(str, layer.shape)),
                    f"{layer.numel:,}",
                    f"{layer.zeros:,}",
                    f"{layer.sparsity:.2%}",
                    layer.status,
                )
                for layer in self.layers
            ),
            ("total", "", f"{self.numel:,}", f"{self.zeros:,}", f"{self.sparsity:.2%}", ""),
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        # The counts and the sparsity (columns 2 to 4) are right-aligned.
        lines = [
            "  ".join(
                cell.rjust(w) if 2 <= i <= 4 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
            for row in rows
        ]
        rule = "-" * max(len(line) for line in lines)
        return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


def magnitude_mask(weight: Tensor, sparsity: float) -> Tensor:
    """The keep-mask that removes the ``round(sparsity * numel)`` smallest ``|weight|`` entries.

    Returns a boolean tensor shaped like ``weight``, ``True`` where the weight is kept. The count
    and the choice (ties included) are those of
    ``torch.nn.utils.prune.l1_unstructured(module, "weight", amount=sparsity)``: the same
    ``round`` (Python's, half to even) and the same ``torch.topk(..., largest=False)`` call.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    magnitude = torch.abs(weight.detach()).reshape(-1)
    if not torch.isfinite(magnitude).all():
        raise TrainingError(
            "cannot prune a weight that holds NaN or infinite values: the training diverged; "
            "lower the learning rate (or check the data's mean and std) and train again"
        )
    n_pruned = round(sparsity * magnitude.numel())
    mask = torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
    if n_pruned:
        pruned = torch.topk(magnitude, k=n_pruned, largest=False).indices
        mask.view(-1)[pruned] = False
    return mask


def _why_not_prunable(module: nn.Module) -> str:
    if getattr(module, "sparse", False):
        return "it produces sparse gradients (sparse=True), which the mask cannot be applied to"
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(module) or any(hasattr(module, f"weight_{s}") for s in ("g", "orig")):
        return "its weight is computed by a parametrization (weight_norm, spectral_norm, ...), not a plain parameter"
    return "it has no 'weight' parameter (e.g. an LSTM's weights are weight_ih_l0, ...)"


def _unwrap(model: nn.Module) -> nn.Module:
    # DDP and DataParallel prefix every name with "module.", torch.compile with "_orig_mod.";
    # masks are keyed by the names of the plain model so that they match its state dict.
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while True:
        if isinstance(model, (DataParallel, DistributedDataParallel)):
            model = model.module
        elif isinstance(compiled_from := getattr(model, "_orig_mod", None), nn.Module):
            model = compiled_from
        else:
            return model


class DSDHandle:
    """The hooks :meth:`DSD.attach` put on one optimizer; ``remove()`` takes them off.

    Also a context manager: ``with dsd.attach(optimizer): train(...)``.
    """

    def __init__(self, owner: DSD, optimizer: torch.optim.Optimizer, hooks: list[Any]) -> None:
        self.optimizer = optimizer
        self._owner = owner
        self._hooks = hooks
        owner._handles.append(self)  # until remove()

    @property
    def attached(self) -> bool:
        """Whether the hooks are still on the optimizer."""
        return bool(self._hooks)

    def remove(self) -> None:
        """Take the hooks off the optimizer (idempotent)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self in self._owner._handles:
            self._owner._handles.remove(self)

    def __enter__(self) -> DSDHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


class DSD:
    """Dense-Sparse-Dense training of ``model``'s weights: prune, train sparse, densify.

    Args:
        model: the network (DDP, DataParallel and ``torch.compile`` wrappers are unwrapped; masks
            use the plain model's names).
        sparsity: fraction of each pruned layer's weights removed, in ``[0, 1]``. The paper
            uses 0.3 for its ImageNet CNNs.
        skip_first: leave the first layer dense: the first module of an ``include`` type in
            ``model.named_modules()`` order, which is the input convolution in every
            torchvision and dsd-zoo CNN (the paper prunes every layer but conv1).
        include: module types whose ``weight`` is pruned. Biases are never pruned.
        exclude: module names (a name also excludes everything under it, e.g. ``"classifier"``)
            or module types to leave dense. A name that matches no module is an error.

    Typical use, one optimizer per phase::

        dsd = DSD(model, sparsity=0.3)
        train(model, SGD(model.parameters(), lr=0.1))          # dense
        dsd.prune()
        opt = SGD(model.parameters(), lr=0.01)
        with dsd.attach(opt):                                    # sparse, mask fixed
            train(model, opt)
        dsd.densify()
        train(model, SGD(model.parameters(), lr=0.001))          # re-dense

    Masks are boolean tensors, ``True`` where the weight is kept, keyed by the parameter's
    state-dict name (``"features.3.weight"``).
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: float = 0.3,
        skip_first: bool = True,
        include: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear),
        exclude: Iterable[Union[str, type]] = (),
    ) -> None:
        if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity <= 1.0:
            raise ValueError(f"sparsity must be a number in [0, 1], got {sparsity!r}")
        self.model = _unwrap(model)
        self.sparsity = float(sparsity)
        self.skip_first = skip_first
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self._status = self._classify_layers()
        self._params: dict[str, nn.Parameter] = {
            name: param for name, (param, status) in self._status.items() if status == "pruned"
        }
        if not self._params:
            raise ValueError(
                f"no layer of {[t.__name__ for t in self.include]} is left to prune in "
                f"{type(self.model).__name__} (skip_first={skip_first}, exclude={list(self.exclude)})"
            )
        self._masks: dict[str, Tensor] = {}
        self._pruned: dict[str, Tensor] = {}  # ~mask, kept to avoid re-allocating it every step
        self._handles: list[DSDHandle] = []

    # ------------------------------------------------------------------ layer selection
    def _classify_layers(self) -> dict[str, tuple[nn.Parameter, str]]:
        """Every weight of an ``include`` module, with 'pruned', 'first layer' or 'excluded'."""
        names, types = self._exclusions()
        status: dict[str, tuple[nn.Parameter, str]] = {}
        owner: dict[int, str] = {}  # id(weight) -> the name it is listed under
        first = True
        for name, module in self.model.named_modules():
            if not isinstance(module, self.include):
                continue
            excluded = isinstance(module, types) or any(name == n or name.startswith(n + ".") for n in names)
            is_first, first = first, False  # the first layer of an included type, whatever follows
            weight = getattr(module, "weight", None)
            if not isinstance(weight, nn.Parameter) or getattr(module, "sparse", False):
                if excluded or (self.skip_first and is_first):
                    continue
                raise ValueError(
                    f"cannot prune {name or type(module).__name__}: {_why_not_prunable(module)}; "
                    "exclude it (exclude=[name]) or leave its type out of include"
                )
            key = f"{name}.weight" if name else "weight"
            if id(weight) in owner:  # a weight shared by two modules is pruned once, under its first name
                if excluded and status[owner[id(weight)]][1] == "pruned":
                    status[owner[id(weight)]] = (weight, "excluded")  # excluding either user keeps it dense
                continue
            owner[id(weight)] = key
            status[key] = (
                weight,
                "first layer" if self.skip_first and is_first else "excluded" if excluded else "pruned",
            )
        return status

    def _exclusions(self) -> tuple[list[str], tuple[type, ...]]:
        """``exclude`` split into module names and module types, each name checked against the model."""
        names = [e for e in self.exclude if isinstance(e, str)]
        types = tuple(e for e in self.exclude if isinstance(e, type))
        if len(names) + len(types) != len(self.exclude):
            raise ValueError(f"exclude takes module names (str) or module types, got {list(self.exclude)}")
        module_names = {name for name, _ in self.model.named_modules()}
        unknown = [n for n in names if n not in module_names]
        if unknown:
            raise ValueError(f"exclude names {unknown} match no module of {type(self.model).__name__}")
        return names, types

    def _check_live(self) -> None:
        """Raise unless every weight this DSD holds is still the model's parameter of that name."""
        live = dict(self.model.named_parameters(remove_duplicate=False))
        for name, (param, _) in self._status.items():
            if live.get(name) is not param:
                raise DSDStateError(
                    f"{name} is no longer the tensor this DSD was created for (the layer was replaced, or loaded "
                    "with load_state_dict(assign=True)); masks and reports would act on the old tensor: "
                    "create a new DSD for the model as it is now"
                )

    @property
    def layer_names(self) -> list[str]:
        """State-dict names of the weights this DSD prunes, in module order."""
        return list(self._params)

    @property
    def is_sparse(self) -> bool:
        """True between :meth:`prune` and :meth:`densify`."""
        return bool(self._masks)

    @property
    def masks(self) -> dict[str, Tensor]:
        """The active keep-masks (empty while dense). A copy of the dict; do not edit the tensors."""
        return dict(self._masks)

    # ------------------------------------------------------------------ phases
    def compute_masks(self) -> dict[str, Tensor]:
        """The masks :meth:`prune` would apply now, without applying them."""
        return {name: magnitude_mask(param, self.sparsity) for name, param in self._params.items()}

    def prune(self, masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Start a sparse phase: fix the masks and zero the pruned weights.

        Args:
            masks: masks to use instead of computing them from ``|w|`` (to resume from
                :func:`dsd_zoo.dsd.load_masks`, or to share rank 0's masks in distributed
                training). Must cover exactly :attr:`layer_names`; ``bool`` or 0/1 tensors.

        Returns:
            The masks now in force.

        The masks stay fixed until :meth:`densify`: nothing recomputes them. Optimizers already
        attached get their state zeroed at the pruned positions (see the module docstring).
        """
        if self.is_sparse:
            raise DSDStateError("the model is already sparse: call densify() before pruning again")
        self._check_live()
        self._masks = self.compute_masks() if masks is None else self._validated(masks)
        self._pruned = {name: ~mask for name, mask in self._masks.items()}
        self._apply_to_weights()
        for handle in self._handles:
            self._clear_optimizer_state(handle.optimizer)
        return dict(self._masks)

    def _validated(self, masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
        missing = [n for n in self._params if n not in masks]
        unexpected = [n for n in masks if n not in self._params]
        if missing or unexpected:
            raise WeightsError(
                f"masks do not fit the pruned layers of {type(self.model).__name__}: "
                f"missing {missing}, unexpected {unexpected} (check sparsity settings, skip_first and exclude)"
            )
        out = {}
        for name, param in self._params.items():
            mask = masks[name]
            if tuple(mask.shape) != tuple(param.shape):
                raise WeightsError(f"mask {name!r} has shape {tuple(mask.shape)}, the weight {tuple(param.shape)}")
            if mask.dtype != torch.bool:
                if mask.dtype.is_floating_point or mask.dtype.is_complex or not ((mask == 0) | (mask == 1)).all():
                    raise WeightsError(f"mask {name!r} must be bool or hold only 0 and 1, got dtype {mask.dtype}")
                mask = mask != 0
            out[name] = mask.to(device=param.device, copy=True)
        return out

    def densify(self) -> dict[str, Tensor]:
        """End the sparse phase: detach every optimizer, drop the masks; pruned weights restart at 0.

        The pruned weights are exactly zero at this point and train again from there; their
        entries in the attached optimizers' state are zeroed too (a no-op unless something wrote
        into that state during the sparse phase). Returns the masks that were in force.
        """
        if not self.is_sparse:
            raise DSDStateError("the model is not sparse: call prune() first")
        self._check_live()
        self._apply_to_weights()
        for handle in list(self._handles):
            self._clear_optimizer_state(handle.optimizer)
            handle.remove()
        masks, self._masks, self._pruned = self._masks, {}, {}
        return masks

    # ------------------------------------------------------------------ optimizer hooks
    def attach(self, optimizer: torch.optim.Optimizer) -> DSDHandle:
        """Enforce the masks on every ``optimizer.step()`` until the handle is removed.

        A step pre-hook zeroes the gradients of pruned weights (so gradient-based state stays
        zero) and a step post-hook zeroes the pruned weights again after the update (so nothing
        the optimizer does, weight decay or momentum from earlier steps included, revives them).
        Attaching before :meth:`prune` is allowed: the hooks do nothing while the model is
        dense. :meth:`densify` removes every handle.
        """
        self._check_live()
        managed = {id(p) for p in self._params.values()}
        if not any(id(p) in managed for group in optimizer.param_groups for p in group["params"]):
            raise ValueError(
                "the optimizer updates none of the weights this DSD prunes; build it from the same model's parameters"
            )
        handle = DSDHandle(
            self,
            optimizer,
            [
                optimizer.register_step_pre_hook(self._zero_pruned_grads),
                optimizer.register_step_post_hook(self._zero_pruned_weights),
            ],
        )
        if self.is_sparse:
            self._clear_optimizer_state(optimizer)
        return handle

    def _zero_pruned_grads(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for name, pruned in self._pruned.items():
            grad = self._params[name].grad
            if grad is not None:
                grad.masked_fill_(pruned, 0)

    def _zero_pruned_weights(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._apply_to_weights()
        if args or kwargs.get("closure") is not None:
            # step(closure) computes the gradients after the pre-hook ran: clear what they wrote.
            self._zero_pruned_grads(optimizer, args, kwargs)
            self._clear_optimizer_state(optimizer)

    @torch.no_grad()
    def _apply_to_weights(self) -> None:
        # masked_fill_, not mul_: it yields +0.0 exactly, even where a weight became inf/NaN.
        for name, pruned in self._pruned.items():
            self._params[name].masked_fill_(pruned, 0)

    @torch.no_grad()
    def _clear_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        for name, pruned in self._pruned.items():
            param = self._params[name]
            for value in optimizer.state.get(param, {}).values():
                # Every per-element buffer (momentum, Adam moments, Adagrad sums) has the
                # weight's shape; scalars such as Adam's `step` are left alone.
                if isinstance(value, Tensor) and value.shape == param.shape:
                    value.masked_fill_(pruned, 0)
        # Optimizers that shard or flatten their state (ZeroRedundancyOptimizer, FSDP's flat
        # parameters) keep nothing here under the parameter; the post-step mask still holds the
        # pruned weights at zero, but their buffers are not cleared: build a fresh optimizer per
        # phase, as `python -m dsd_zoo.train` does.

    # ------------------------------------------------------------------ reporting
    def report(self) -> SparsityReport:
        """Per-layer and total sparsity, counted from the weights' actual zeros."""
        self._check_live()
        layers = tuple(
            LayerSparsity(name, tuple(param.shape), param.numel(), int((param.detach() == 0).sum()), status)
            for name, (param, status) in self._status.items()
        )
        return SparsityReport(layers, target=self.sparsity)

    def __repr__(self) -> str:
        return (
            f"DSD({type(self.model).__name__}, sparsity={self.sparsity}, layers={len(self._params)}, "
            f"phase={'sparse' if self.is_sparse else 'dense'}, optimizers={len(self._handles)})"
        )
