"""The input stage that changes nothing: the encoder sees the image as loaded."""

from __future__ import annotations

from code.data.batch import Batch
from code.models.base import InputStage
from code.registry import INPUT_STAGES


@INPUT_STAGES.register("identity")
class IdentityInput(InputStage):
    """Passes the batch on unchanged."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, batch: Batch) -> Batch:
        return batch
