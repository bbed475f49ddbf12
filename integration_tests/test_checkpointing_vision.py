"""Gradient checkpointing of timm and torchvision models trains the active subnet of a converted model.

With ``set_grad_checkpointing(True)`` timm runs the blocks of a stage one by one
(``checkpoint_seq``) instead of calling the stage; a block the subnet drops passes its input
through, so the checkpointed model computes the outputs and gradients of the active subnet, and
a sandwich step (one backward per subnet) gives the gradients it gives without checkpointing.
torchvision's DenseNet checkpoints its dense layers once ``memory_efficient`` is set after the
conversion, with the same gradients.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import autonas as an

pytestmark = [pytest.mark.vision, pytest.mark.filterwarnings("ignore::UserWarning")]
timm = pytest.importorskip("timm")

#: Families whose depth timm checkpoints block by block: a flat Sequential (ViT), stages of
#: Sequentials (ConvNeXt), the flattened stages of a ResNet.
MODELS = {
    "vit_tiny_patch16_224": {"img_size": 32},
    "convnext_atto": {},
    "resnet10t": {},
}


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    model = an.convert(timm.create_model(name, num_classes=5, **MODELS[name]), mode="autonas", mode_kwargs={"seed": 0})
    checkpointed = copy.deepcopy(model)
    checkpointed.set_grad_checkpointing(True)
    return model.train(), checkpointed.train()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 32, 32, generator=generator), torch.tensor([1, 3])


def _gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", MODELS)
def test_the_minimal_subnet_checkpointed_computes_its_outputs_and_gradients(name: str) -> None:
    model, checkpointed = _pair(name)
    assert any(
        an.sample(model, min)[key] < an.sample(model, max)[key] for key in an.sample(model, max) if "depth" in key
    )
    x, y = _batch()
    results = []
    with an.no_patches():
        for net in (model, checkpointed):
            an.sample(net, min)
            output = net(x)
            F.cross_entropy(output, y).backward()
            results.append((output.detach(), _gradients(net)))
    (expected, expected_grads), (got, got_grads) = results
    torch.testing.assert_close(got, expected)
    assert got_grads.keys() == expected_grads.keys(), "the dropped blocks get no gradient"
    for key, grad in expected_grads.items():
        torch.testing.assert_close(got_grads[key], grad, msg=key)


def _sandwich_gradients(nets: tuple[torch.nn.Module, ...]) -> list[dict[str, torch.Tensor]]:
    """The gradients of one sandwich step (one backward per subnet) of each of ``nets``."""
    x, y = _batch()
    grads = []
    for net in nets:
        for subnet in an.sandwich(net, num_random=2):
            subnet.loss(net(x), y, F.cross_entropy).backward()
        grads.append(_gradients(net))
    return grads


def test_a_sandwich_step_checkpointed_gives_the_gradients_of_one_without_checkpointing() -> None:
    grads = _sandwich_gradients(_pair("vit_tiny_patch16_224"))
    assert grads[1].keys() == grads[0].keys()
    for key, grad in grads[0].items():
        torch.testing.assert_close(grads[1][key], grad, msg=key)


def test_densenet_memory_efficient_set_after_conversion_gives_the_gradients_without_it() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = an.convert(torchvision.models.densenet121(num_classes=5), mode="autonas", mode_kwargs={"seed": 0})
    checkpointed = copy.deepcopy(model)
    layers = [module for module in checkpointed.modules() if hasattr(module, "memory_efficient")]
    assert len(layers) == 58
    for layer in layers:
        layer.memory_efficient = True
    grads = _sandwich_gradients((model.train(), checkpointed.train()))
    assert grads[1].keys() == grads[0].keys()
    for key, grad in grads[0].items():
        torch.testing.assert_close(grads[1][key], grad, msg=key)
