"""autonas_patch: training-time subnet sampling and BatchNorm recalibration for supernets.

A supernet is trained with the user's own loop. Patching the model instance makes that work: in
train mode every forward first activates a random subnet, input batches are cached, and
``model.eval()`` switches back to the maximal subnet and recalibrates BatchNorm statistics for it.
This package knows nothing about how the search space is built: it drives it through a
:class:`SubnetSampler` that the converter supplies.

Contract for converters (what ``autonas_modes`` calls)::

    from autonas_patch import AutoNASPatchManager, PatchManager, prep_for_eval

    class ModelSampler:                        # any object with these four methods (SubnetSampler)
        def is_configurable(self) -> bool: ...        # more than one subnet?
        def sample(self, rng: random.Random) -> None: ...  # activate a uniform random subnet, all draws from rng
        def sample_max(self) -> None: ...             # activate the maximal subnet
        def sample_min(self) -> None: ...             # activate the minimal subnet

    AutoNASPatchManager(model).patch(ModelSampler(model), seed=None)   # after conversion
    PatchManager.is_patched(model) -> bool                 # model or a submodule patched?
    manager = PatchManager.get_manager(model)              # manager of the patched module inside model
    manager.call_pre_sample()                              # BEFORE every select/sample done outside the
                                                           # manager: marks BatchNorm statistics stale
    manager.generator.rng                                  # the model's random.Random, same on every rank
    manager.generator.reseed(seed)                         # start the model's sampling over from a seed
    manager.sample(rng=None) / sample_max() / sample_min() # pre-sample hook + sampler
    manager.call_post_eval(forward_loop=None)              # recalibrate now if stale (export with calib)
    manager.patch_data                                     # dict: queue, fill, count, train_count_since_sample,
                                                           # autosampled, hold_subnet, repeat_batch, sampler, generator
    manager.unpatch()                                      # before export: the instance is as before patch()
    prep_for_eval(model, forward_loop=None) -> model       # eval mode + one post-eval hook (start of a search)

``forward_loop`` is a callable taking the model (for example one that runs a few batches of a data
loader through it). The sampler is stored in the model's patch data: keep it picklable and
deep-copyable (a plain class holding modules or hyperparameters) so a patched model pickles and
deep-copies.

Training-time behaviour (AutoNAS, SPEC section 6):

- train-mode forward: sample a subnet from the model's generator, cache the inputs while fewer than
  50 batches are cached (and at every 100th forward), count.
- ``model.eval()`` after an auto-sampled training step: maximal subnet; if its statistics are stale
  (fewer than 100 training forwards since the last architecture change) recalibrate from the 50
  cached batches, or warn "calibration queue not filled" when fewer are cached.
- recalibration = reset every BatchNorm, cumulative average (``momentum=None``) over the batches under
  ``torch.no_grad``, then every submodule gets back its own train flag and momentum.
- :func:`sandwich` (the sandwich rule): inside one training step, the maximal, the minimal and a few
  random subnets in turn, their gradients accumulated, all-reduced once under DDP; with in-place
  distillation (:func:`soft_cross_entropy` against the maximal subnet's detached output); its random
  subnets may be the worst or best of a few candidates by a score (AttentiveNAS, ``choose=``).
- gradient checkpointing (a module with Hugging Face's ``gradient_checkpointing`` or timm's
  ``grad_checkpointing`` switch on): a backward that reaches a training forward's outputs after the
  architecture changed raises, since it would recompute checkpointed blocks under another subnet.
- :func:`no_patches`, :func:`enable_patches`, :func:`set_patches_enabled`, :func:`is_patches_enabled`:
  a process-wide switch (context managers and decorators) that turns all of the above off and on.
- torch.distributed: the generator's state is broadcast from rank 0 once, at its first use inside a
  process group; after that every rank draws the same subnets with no communication. Wrap the model
  in ``DistributedDataParallel`` after patching (``find_unused_parameters=True`` when depth is
  searched).
"""

from importlib.metadata import version as _version

from .autonas_manager import BN_CALIB_ITERS, QUEUE_MAXLEN, AutoNASPatchManager
from .calibration import recalibrate_batchnorm
from .distill import soft_cross_entropy
from .generator import SyncedRandom
from .manager import PatchManager, prep_for_eval
from .sampler import SubnetSampler
from .sandwich import SandwichSubnet, sandwich
from .switch import enable_patches, is_patches_enabled, no_patches, set_patches_enabled

__version__ = _version("autonas-patch")

__all__ = [
    "BN_CALIB_ITERS",
    "QUEUE_MAXLEN",
    "AutoNASPatchManager",
    "PatchManager",
    "SandwichSubnet",
    "SubnetSampler",
    "SyncedRandom",
    "__version__",
    "enable_patches",
    "is_patches_enabled",
    "no_patches",
    "prep_for_eval",
    "recalibrate_batchnorm",
    "sandwich",
    "set_patches_enabled",
    "soft_cross_entropy",
]
