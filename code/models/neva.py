"""NeVA (Schwinn et al., 2022): scanpaths that serve a frozen downstream model's task.

Each fixation is placed where the downstream model, seeing the image through the foveation
(:mod:`code.models.layers.foveation`) with the memory of the fixations before, does its task
best: ``criterion`` compares its output on the perceived image with its output on the clean one
(so no labels are needed). Criteria are registered parts (``CRITERIA``), as are the generators
(``GENERATORS``): signed-gradient descent on the criterion (``Search``), one fixation after
another (``sequential``) or all of a scanpath at once (``joint``), or a small attention network
that predicts each position (``attention_network``), trained on the criterion first through the
trainer (``GeneratorTraining``). Positions are (x, y) in normalised [−1, 1] image coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from code.data.batch import Batch
from code.data.gaze import GazeDataset, Stimulus
from code.models.build import GazeModel
from code.models.layers.foveation import Foveation
from code.models.shapes import PredictionKind
from code.registry import CRITERIA, GENERATORS, ConfigError, PartFactory

# The batch fields a downstream model may read besides its input: its decoder's centre bias and
# the fixations that only its loss reads (filled with the image centre, as code.predict does).
DOWNSTREAM_FIELDS = frozenset({"target", "centerbias", "fixations", "fixation_mask"})


class Downstream:
    """A frozen framework model applied to images of one size, without its input stage (a
    masking stage belongs to its training): ``output`` is its decoder's prediction, ``code``
    its encoder's deepest map pooled over space (an embedding every model has)."""

    def __init__(self, model: GazeModel, centerbias: torch.Tensor | None, where: str) -> None:
        lacking = {
            node: sorted(part.requires - DOWNSTREAM_FIELDS)
            for node, part in model.parts().items()
            if node != "INPUT_STAGE" and part.requires - DOWNSTREAM_FIELDS
        }
        if lacking:
            parts = "; ".join(f"MODEL.{node} reads {', '.join(f)}" for node, f in lacking.items())
            raise ValueError(f"{where}: cannot be a downstream model: {parts}")
        self.model = model.eval().requires_grad_(False)
        self.centerbias = centerbias  # (H, W) log-density at the images' size, or None

    @property
    def prediction(self) -> PredictionKind:
        return self.model.prediction

    def batch(self, images: torch.Tensor) -> Batch:
        count, device = len(images), images.device
        centre = torch.tensor([images.shape[-1] / 2, images.shape[-2] / 2], device=device)
        return Batch(
            input=images,
            image_index=torch.arange(count, device=device),
            original_size=torch.tensor([images.shape[-2:]] * count, device=device),
            target=images,
            fixations=centre.expand(count, 1, 2),
            fixation_mask=torch.ones(count, 1, dtype=torch.bool, device=device),
            centerbias=None
            if self.centerbias is None
            else self.centerbias.to(device).expand(count, -1, -1),
        )

    def output(self, images: torch.Tensor) -> torch.Tensor:
        batch = self.batch(images)
        model = self.model
        return model.decoder(model.block(model.encoder(images), batch), batch)

    def code(self, images: torch.Tensor) -> torch.Tensor:
        deepest = list(self.model.encoder.output_shapes)[-1]
        return self.model.encoder(images)[deepest].mean(dim=(-2, -1))


class Criterion:
    """The downstream loss of perceived images, per item, against the model's output on the
    clean ``images`` (computed once). ``accepts``: the predictions it can compare (None: any)."""

    accepts: frozenset[PredictionKind] | None = None

    def __init__(self, downstream: Downstream, images: torch.Tensor) -> None:
        self.downstream = downstream
        self.images = images
        with torch.no_grad():
            self.target = self.reference(images)

    def reference(self, images: torch.Tensor) -> torch.Tensor:
        return self.downstream.output(images)

    def __call__(self, perceived: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@CRITERIA.register("reconstruction")
class Reconstruction(Criterion):
    """Mean squared error of the model's reconstruction of the perceived image to the clean
    image (e.g. a masked-image-modelling autoencoder)."""

    accepts = frozenset({PredictionKind.IMAGE})

    def reference(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def __call__(self, perceived: torch.Tensor) -> torch.Tensor:
        return (self.downstream.output(perceived) - self.target).pow(2).mean(dim=(1, 2, 3))


@CRITERIA.register("classification")
class Classification(Criterion):
    """Cross-entropy of the model's logits on the perceived image to its own class for the
    clean image."""

    accepts = frozenset({PredictionKind.CLASS_LOGITS})

    def reference(self, images: torch.Tensor) -> torch.Tensor:
        return self.downstream.output(images).argmax(dim=1)

    def __call__(self, perceived: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.downstream.output(perceived), self.target, reduction="none")


@CRITERIA.register("embedding")
class Embedding(Criterion):
    """1 − cosine similarity of the encoder's pooled code of the perceived and the clean image
    (any model: every one has an encoder)."""

    def reference(self, images: torch.Tensor) -> torch.Tensor:
        return self.downstream.code(images)

    def __call__(self, perceived: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(self.downstream.code(perceived), self.target, dim=1)


@CRITERIA.register("saliency")
class Saliency(Criterion):
    """KL divergence (nats) of the saliency model's density on the perceived image from its
    density on the clean image: where would people look if they saw only this?"""

    accepts = frozenset({PredictionKind.LOG_DENSITY})

    def __call__(self, perceived: torch.Tensor) -> torch.Tensor:
        log_p = self.target.flatten(1)
        return (log_p.exp() * (log_p - self.downstream.output(perceived).flatten(1))).sum(dim=1)


@dataclass(frozen=True)
class Search:
    """Signed-gradient descent on positions: ``steps`` steps of ``lr``, each item keeping its best
    position; where a step did not improve, the next starts from the best position moved by
    Gaussian noise of ``jitter`` (a restart near it)."""

    steps: int
    lr: float
    jitter: float

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0 or self.jitter < 0:
            raise ValueError(
                f"search needs STEPS >= 1, LR > 0 and JITTER >= 0, got {self.steps}, {self.lr}, "
                f"{self.jitter}"
            )

    def __call__(
        self,
        loss_of: Callable[[torch.Tensor], torch.Tensor],
        start: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(best positions, their losses) for (B, ...) ``start`` positions; ``loss_of`` maps
        positions to (B,) losses, differentiably."""
        position = start.detach().clone()
        best, best_loss = position.clone(), torch.full((len(start),), torch.inf).to(start)
        for _ in range(self.steps):
            position.requires_grad_(True)
            loss = loss_of(position)
            (gradient,) = torch.autograd.grad(loss.sum(), position)
            with torch.no_grad():
                loss = loss.detach()
                better = loss < best_loss
                where = better.view(-1, *[1] * (start.dim() - 1))
                best = torch.where(where, position, best)
                best_loss = torch.where(better, loss, best_loss)
                noise = torch.randn(start.shape, generator=generator).to(start)
                moved = position - self.lr * gradient.sign()
                position = torch.where(where, moved, best + self.jitter * noise).clamp(-1, 1)
        return best.detach(), best_loss


def scanpath_losses(
    criterion: Criterion, foveation: Foveation, positions: torch.Tensor
) -> torch.Tensor:
    """(B, T) downstream loss after each fixation of (B, T, 2) scanpaths (memory carried)."""
    images = criterion.images
    residual, memory = foveation.start(images)
    losses = []
    for t in range(positions.shape[1]):
        losses.append(criterion(foveation.perceive(images, residual, memory, positions[:, t])))
        memory = foveation.remember(memory, positions[:, t])
    return torch.stack(losses, dim=1)


def sequential_scanpaths(
    criterion: Criterion, foveation: Foveation, length: int, search: Search,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(B, length, 2) positions, each searched from the image centre given the ones before,
    and (B, length) the loss after each."""
    images = criterion.images
    residual, memory = foveation.start(images)
    positions, losses = [], []
    for _ in range(length):

        def loss_of(position: torch.Tensor, seen: torch.Tensor = memory) -> torch.Tensor:
            return criterion(foveation.perceive(images, residual, seen, position))

        position, loss = search(loss_of, images.new_zeros(len(images), 2), generator)
        memory = foveation.remember(memory, position)
        positions.append(position)
        losses.append(loss)
    return torch.stack(positions, dim=1), torch.stack(losses, dim=1)


def joint_scanpaths(
    criterion: Criterion, foveation: Foveation, length: int, search: Search,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Every position of a scanpath searched at once, from the centre, on the mean loss over
    its fixations; the (B, length) loss after each fixation of the best scanpath."""
    images = criterion.images
    start = images.new_zeros(len(images), length, 2)
    positions, _ = search(
        lambda p: scanpath_losses(criterion, foveation, p).mean(dim=1), start, generator
    )
    with torch.no_grad():
        return positions, scanpath_losses(criterion, foveation, positions)


class AttentionNetwork(nn.Module):
    """NeVA's learned attention α: a small CNN that sees the perceived image and the memory
    and outputs the next position (tanh, so inside the image). Trained on the downstream loss
    through the foveation (``learned_scanpaths`` with gradients on)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 4  # RGB + memory
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.GELU()]
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(previous, 2)
        nn.init.zeros_(self.head.weight)  # the first fixation starts at the centre
        nn.init.zeros_(self.head.bias)

    def forward(self, perceived: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.features(torch.cat([perceived, memory[:, None]], dim=1))
        return torch.tanh(self.head(x.mean(dim=(-2, -1))))


def learned_scanpaths(
    network: AttentionNetwork, criterion: Criterion, foveation: Foveation, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, length, 2) positions the network chooses, each from the image perceived so far
    (fully blurred before the first fixation), and (B, length) the loss after each."""
    images = criterion.images
    residual, memory = foveation.start(images)
    perceived = images + residual
    positions, losses = [], []
    for _ in range(length):
        position = network(perceived, memory)
        perceived = foveation.perceive(images, residual, memory, position)
        losses.append(criterion(perceived))
        memory = foveation.remember(memory, position)
        positions.append(position)
    return torch.stack(positions, dim=1), torch.stack(losses, dim=1)


class ScanpathGenerator(nn.Module):
    """Places ``length`` fixations on the images of a criterion: ``(criterion, foveation,
    length, rng)`` -> (B, length, 2) positions and (B, length) the loss after each. ``rng``:
    the generator of any random draws (e.g. a search's restarts). ``trains``: whether it has
    weights the task first fits to the training images' downstream loss (``GeneratorTraining``,
    through the trainer). ``row``: its row in the task's tables and its files' name."""

    trains = False
    row = "NeVA"

    def forward(
        self, criterion: Criterion, foveation: Foveation, length: int, rng: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def generate(
        self,
        criterion: Criterion,
        foveation: Foveation,
        length: int,
        rng: torch.Generator | None,
        stimuli: list[Stimulus],
    ) -> torch.Tensor:
        """(B, length, 2) positions on the criterion's images, those of the test ``stimuli`` (in
        batch order): the task's call. A generator that reads the images as they are on disk
        (e.g. another model's input) overrides it; NeVA's place them by the criterion."""
        return self(criterion, foveation, length, rng)[0]

    def conditional_scores(self, dataset: GazeDataset, device: torch.device) -> dict | None:
        """A probabilistic generator's own density scored on ``dataset``'s human fixations, each
        given the ones before (``code.engine.model_scoring.evaluate_scanpath_model``'s layout);
        None for a deterministic one (NeVA's: it places fixations, it has no density)."""
        return None


class SearchGenerator(ScanpathGenerator):
    """A generator that searches positions by gradient (``Search``: ``steps``, ``lr``,
    ``jitter``) the way its ``scanpaths`` function orders the search."""

    scanpaths: Callable[..., tuple[torch.Tensor, torch.Tensor]]

    def __init__(self, steps: int, lr: float, jitter: float) -> None:
        super().__init__()
        self.search = Search(steps, lr, jitter)

    def forward(
        self, criterion: Criterion, foveation: Foveation, length: int, rng: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return type(self).scanpaths(criterion, foveation, length, self.search, rng)


@GENERATORS.register("sequential")
class SequentialSearch(SearchGenerator):
    """Each fixation searched from the image centre given the ones before."""

    scanpaths = staticmethod(sequential_scanpaths)


@GENERATORS.register("joint")
class JointSearch(SearchGenerator):
    """Every fixation of a scanpath searched at once on their mean loss."""

    scanpaths = staticmethod(joint_scanpaths)


@GENERATORS.register("attention_network")
class LearnedAttention(ScanpathGenerator):
    """NeVA's learned attention: an ``AttentionNetwork`` of ``channels`` widths places each
    fixation (``learned_scanpaths``); gradients flow only while it trains."""

    trains = True

    def __init__(self, channels: list[int], seed: int) -> None:
        super().__init__()
        if not channels or min(channels) < 1:
            raise ConfigError(f"must be positive widths, got {channels}", key="CHANNELS")
        # Its initial weights come from the run's seed alone, whatever was built before it.
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.network = AttentionNetwork(channels)

    def forward(
        self, criterion: Criterion, foveation: Foveation, length: int, rng: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):
            return learned_scanpaths(self.network, criterion, foveation, length)


class GeneratorTraining(nn.Module):
    """A trainable generator fitted to the frozen downstream model's loss, as the trainer fits
    any model: ``model(batch)`` gives the (B, length) loss after each fixation of the scanpaths
    it generates on the batch's images, ``loss`` their sum and count (so the mean over images
    and fixations is minimised). The downstream model stays in eval mode (frozen, its
    normalisation keeps its statistics) while the generator trains."""

    prediction = None  # losses, no picture to draw of them

    def __init__(
        self,
        generator: ScanpathGenerator,
        downstream: Downstream,
        criterion: PartFactory,
        foveation: Foveation,
        length: int,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.downstream_model = downstream.model  # a sub-module: it moves with the trainee
        self.downstream = downstream
        self.criterion = criterion
        self.foveation = foveation
        self.length = length

    def train(self, mode: bool = True) -> GeneratorTraining:
        super().train(mode)
        self.downstream_model.eval()
        return self

    def forward(self, batch: Batch) -> tuple[torch.Tensor, Batch]:
        criterion = self.criterion(downstream=self.downstream, images=batch.input)
        _, losses = self.generator(criterion, self.foveation, self.length, None)
        return losses, batch

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return prediction.sum(), prediction.new_tensor(prediction.numel())

    def constrain(self) -> None:
        """No weight constraints."""
