"""Input stages, encoders, blocks, attention mechanisms, decoders and the model's own segmenter;
importing this package registers all of them."""

from code.models import attention, segmenters  # noqa: F401
from code.models.blocks import cross_attention, identity, spade  # noqa: F401
from code.models.decoders import (  # noqa: F401
    all_mlp,
    conv_reconstruction,
    linear_probe,
    point_classifier,
    reconstruction,
    regression,
    saliency,
    scanpath,
    unet_transformer,
)
from code.models.encoders import (  # noqa: F401
    convnet,
    dinov2,
    hierarchical_transformer,
    masked_convnet,
    multires,
)
from code.models.input_stages import identity as identity_input  # noqa: F401
from code.models.input_stages import masking  # noqa: F401
