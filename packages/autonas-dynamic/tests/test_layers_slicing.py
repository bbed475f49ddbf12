"""Taking the active part of a stored tensor."""

import torch

from autonas_dynamic.slicing import crop_kernel, slice_tensor


def test_whole_dimensions_return_the_tensor_itself():
    tensor = torch.randn(4, 3, 5)
    assert slice_tensor(tensor, (slice(0, 4), None, slice(None))) is tensor
    assert slice_tensor(tensor, (slice(0, 10),)) is tensor


def test_prefix_slices_are_views_that_write_through():
    tensor = torch.zeros(6, 4)
    view = slice_tensor(tensor, (slice(0, 3), slice(0, 2)))
    assert view.shape == (3, 2) and view._base is tensor
    view.add_(1)
    assert tensor.sum() == 6 and torch.all(tensor[:3, :2] == 1)


def test_mixed_slices_and_indices_match_sequential_indexing():
    tensor = torch.randn(5, 6, 7, 3)
    rows, channels = torch.tensor([4, 0, 2]), torch.tensor([1, 5])
    result = slice_tensor(tensor, (rows, channels, slice(2, 5)))
    torch.testing.assert_close(result, tensor[rows][:, channels][:, :, 2:5])


def test_centre_crop():
    assert crop_kernel((7, 5), (3, 5)) == (slice(2, 5), slice(0, 5))
    assert crop_kernel((4,), (2,)) == (slice(1, 3),)
    kernel = torch.arange(49.0).reshape(1, 1, 7, 7)
    cropped = slice_tensor(kernel, (None, None, *crop_kernel((7, 7), (3, 3))))
    torch.testing.assert_close(cropped, kernel[:, :, 2:5, 2:5])
