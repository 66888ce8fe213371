"""Dense-Sparse-Dense training for any PyTorch model (Han et al., ICLR 2017, arXiv 1607.04381).

::

    from dsd_zoo.dsd import DSD, DSDSchedule

    dsd = DSD(model, sparsity=0.3)                       # first conv left dense, biases never pruned
    for phase in DSDSchedule.standard(lr=0.1, epochs=(30, 10, 10)):   # lr x0.1 per phase
        if phase.sparse:
            dsd.prune()                                  # mask fixed for the whole phase
        elif dsd.is_sparse:
            dsd.densify()                                # pruned weights restart at exactly 0
        optimizer = torch.optim.SGD(model.parameters(), lr=phase.lr, momentum=0.9)
        with dsd.attach(optimizer):                      # mask enforced after every step
            train(model, optimizer, phase.epochs)
    print(dsd.report())

:func:`dsd_zoo.dsd.loop.train_phases` runs that loop for you; ``python -m dsd_zoo.train`` is the
command line around it. This package is not imported by ``import dsd_zoo``.
"""

from dsd_zoo.dsd.checkpoint import load_checkpoint, load_masks, read_metadata, save_checkpoint, save_masks
from dsd_zoo.dsd.masks import DSD, DSDHandle, DSDStateError, LayerSparsity, SparsityReport, magnitude_mask
from dsd_zoo.dsd.schedule import DSDSchedule, Phase

__all__ = [
    "DSD",
    "DSDHandle",
    "DSDSchedule",
    "DSDStateError",
    "LayerSparsity",
    "Phase",
    "SparsityReport",
    "load_checkpoint",
    "load_masks",
    "magnitude_mask",
    "read_metadata",
    "save_checkpoint",
    "save_masks",
]
