"""Masked image modelling across eye movements: the seed's autoencoder and its masked loss."""

from __future__ import annotations

import torch

from code.data.batch import Batch
from code.models.decoders.conv_reconstruction import ConvReconstructionDecoder
from code.models.decoders.reconstruction import masked_squared_error
from code.models.encoders.masked_convnet import MaskedConvNetEncoder


def _batch(image: torch.Tensor, mask: torch.Tensor | None = None) -> Batch:
    n = len(image)
    return Batch(input=image, image_index=torch.arange(n),
                 original_size=torch.tensor([list(image.shape[-2:])] * n),
                 target=image.clone(), loss_mask=mask)  # fmt: skip


def test_the_seed_autoencoder_maps_96_pixels_to_a_128x12x12_code_and_back() -> None:
    encoder = MaskedConvNetEncoder(channels=[32, 64, 128], blocks=3, outputs=[2])
    decoder = ConvReconstructionDecoder(encoder.output_shapes, channels=[128, 64, 32], blocks=2)
    image = torch.rand(2, 3, 96, 96)
    code = encoder(image)
    assert list(code) == ["stage2"] and code["stage2"].shape == (2, 128, 12, 12)
    assert isinstance(decoder.project, torch.nn.Identity)  # the code feeds the decoder as it is
    output = decoder(code, _batch(image))
    assert output.shape == (2, 3, 96, 96) and output.min() > 0 and output.max() < 1
    # residual blocks: 3 per stage, the first of each with a 1x1 skip (channels and stride change)
    skips = [m.skip for stage in encoder.stages for m in stage]
    assert [s is not None for s in skips] == [True, False, False] * 3
    odd = torch.rand(1, 3, 50, 70)  # any size: cropped back to the image
    assert decoder(encoder(odd), _batch(odd)).shape == (1, 3, 50, 70)


def test_masked_loss_is_the_mean_squared_error_where_the_mask_is_one() -> None:
    target = torch.zeros(1, 3, 2, 2)
    prediction = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]).expand(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    batch = _batch(target, mask)
    total, count = masked_squared_error(prediction, batch)
    assert total.item() == 3 * (1 + 16) and count.item() == 3 * 2  # by hand: (1² + 4²) per channel
    total, count = masked_squared_error(prediction, _batch(target))
    assert total.item() == 3 * (1 + 4 + 9 + 16) and count.item() == 12
