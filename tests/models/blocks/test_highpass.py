import pytest
import torch

from biqa.models.blocks.highpass import FixedHighPass


@pytest.mark.parametrize("kind, responses", [("laplacian", 1), ("sobel", 2)])
def test_constant_image_maps_to_zero_everywhere(kind, responses):
    filt = FixedHighPass(kind, in_channels=3)
    out = filt(torch.full((2, 3, 9, 11), 0.7))
    assert filt.out_channels == 3 * responses
    assert out.shape == (2, 3 * responses, 9, 11)
    # Zero up to float rounding: 0.7 is not exact in binary, and the convolution's summation order varies.
    torch.testing.assert_close(out, torch.zeros_like(out), atol=1e-6, rtol=0)


def test_ramp_laplacian_zero_inside_sobel_sees_its_direction():
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 8, 8)
    laplacian = FixedHighPass("laplacian")(ramp)
    assert torch.count_nonzero(laplacian[..., 1:-1]) == 0
    sobel = FixedHighPass("sobel")(ramp)
    horizontal, vertical = sobel[:, 0::2], sobel[:, 1::2]
    torch.testing.assert_close(horizontal[..., 1:-1], torch.full_like(horizontal[..., 1:-1], 8.0))
    assert torch.count_nonzero(vertical) == 0


def test_filter_is_not_trained():
    filt = FixedHighPass("sobel")
    assert not list(filt.parameters())
    assert "kernel" not in filt.state_dict()


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="laplacian"):
        FixedHighPass("canny")
