"""SegmentationModule: the LightningModule that trains and evaluates any segmentation net.

The module knows nothing about a particular architecture or dataset: ``net`` is any
``nn.Module`` mapping ``(N, 3, H, W)`` images to ``(N, C, H, W)`` logits (or, in training,
a dict ``{"out": logits, "aux": aux_logits}``, where ``aux`` may also be a list of logits,
e.g. DeepLab v2's per-scale outputs). Batches are dicts with ``"image"``
(normalized float), ``"mask"`` (int64 class indices, 255 = void) and ``"name"``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from seglit import IGNORE_INDEX
from seglit.evaluation import (
    EvalResult,
    ImageRecord,
    batch_image_names,
    eval_result,
    gather_unique_records,
)
from seglit.inference import InferenceConfig, predict_log_probs, predict_logits, refine_with_crf
from seglit.metrics import checkerboard_score, per_image_confusion
from seglit.optim import PolyLR, default_sgd


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""


def default_poly(optimizer: torch.optim.Optimizer) -> PolyLR:
    """Poly schedule (power 0.9) over the whole run, stepped per iteration."""
    return PolyLR(optimizer, power=0.9)


def split_output(
    output: Tensor | dict[str, Any],
) -> tuple[Tensor, Tensor | list[Tensor] | None]:
    """Return ``(logits, aux logits or a list of them, or None)`` from a net's output."""
    if isinstance(output, dict):
        return output["out"], output.get("aux")
    return output, None


def resize_logits(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize logits to ``size``; labels are never resized, logits are."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def class_indices(masks: Tensor) -> Tensor:
    """A batch's label maps as int64 class indices (a user's dataset may return uint8).

    Raises:
        ValueError: The masks are not integers (a float mask is a pipeline mistake, not labels).
    """
    if masks.is_floating_point() or masks.is_complex() or masks.dtype == torch.bool:
        raise ValueError(
            f"batch['mask'] has dtype {masks.dtype}; expected integer class indices "
            "(int64, or uint8 as read from a PNG), 255 = ignore"
        )
    return masks.long()


class SegmentationModule(L.LightningModule):
    """Trains a segmentation network with cross-entropy and evaluates dataset-level mIoU.

    Args:
        net: The network. Its ``backbone`` attribute, when present, is treated as the
            (possibly pretrained) feature extractor; every other parameter is a newly
            initialised layer and gets ``head_lr_mult`` times the learning rate.
        num_classes: Number of classes (linked from ``data.num_classes`` by the CLI).
        class_names: Class names used in logged metric keys (linked from the data).
        ignore_index: Label value excluded from the loss and metrics.
        class_weights: Optional per-class weights of the cross-entropy.
        aux_weight: Weight of the auxiliary loss when the net returns ``"aux"`` (each
            output's loss when ``"aux"`` is a list).
        optimizer: Optimizer factory; defaults to SGD(lr=0.01, momentum=0.9, wd=1e-4).
        lr_scheduler: LR scheduler factory; defaults to poly (power 0.9) per iteration.
            A :class:`~seglit.optim.PolyLR` without ``total_iters`` runs over
            ``trainer.estimated_stepping_batches``.
        head_lr_mult: LR multiplier for parameters outside ``net.backbone`` (or, with
            ``head_lr_scope="classifier"``, for the net's final classifier only).
        head_lr_scope: What ``head_lr_mult`` applies to: ``head`` (every parameter outside
            ``net.backbone``) or ``classifier`` (the layers ``net.classifier_modules()``
            returns: DeepLab v1/v2's fc8, the only layers caffe's reference nets train at
            lr x10; fc6/fc7 then learn at the base rate).
        loss_average: How the cross-entropy averages over pixels: ``labelled`` (the sum over
            labelled pixels divided by their number, or by their class weights' sum; PyTorch's
            and caffe's default) or ``all`` (divided by every pixel, ignored ones included:
            mmseg's ``CrossEntropyLoss`` with its default ``avg_non_ignore=False``).
        bias_lr_mult: LR multiplier for biases (caffe's ``lr_mult: 2`` on biases, as in the
            FCN and DeepLab reference nets: 2.0); multiplies with ``head_lr_mult``.
        bias_weight_decay: Apply weight decay to biases (caffe's reference nets use
            ``decay_mult: 0`` on biases: false).
        inference: How validation, test and predict run the net (whole image, sliding
            window, multi-scale / flip TTA, CRF).
        channels_last: Run the net in channels-last memory format.
        compile: Wrap the net's forward in ``torch.compile``.
        measure_checkerboard: Score checkerboard artifacts of the predicted probabilities at
            validation (:func:`seglit.metrics.checkerboard_score` at the net's output stride;
            ``val/checkerboard``) and of the log-probabilities, where saturated
            probabilities no longer show a pattern the logits still carry
            (``val/checkerboard_logits``).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        class_names: list[str] | None = None,
        ignore_index: int = IGNORE_INDEX,
        class_weights: list[float] | None = None,
        aux_weight: float = 0.4,
        optimizer: OptimizerCallable = default_sgd,
        lr_scheduler: LRSchedulerCallable = default_poly,
        head_lr_mult: float = 1.0,
        head_lr_scope: Literal["head", "classifier"] = "head",
        loss_average: Literal["labelled", "all"] = "labelled",
        bias_lr_mult: float = 1.0,
        bias_weight_decay: bool = True,
        inference: InferenceConfig | None = None,
        channels_last: bool = False,
        compile: bool = False,
        measure_checkerboard: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler"])
        self.net = net
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(num_classes)]
        )
        if len(self.class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but num_classes is {num_classes}"
            )
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(
                f"class_weights has {len(class_weights)} values but num_classes is {num_classes}"
            )
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.head_lr_mult = head_lr_mult
        if head_lr_scope not in ("head", "classifier"):
            raise ValueError(
                f"invalid head_lr_scope={head_lr_scope!r}; expected 'head' or 'classifier'"
            )
        if head_lr_scope == "classifier" and not hasattr(net, "classifier_modules"):
            raise ValueError(
                f"head_lr_scope='classifier' needs a net with classifier_modules() "
                f"(DeepLabV1, DeepLabV2); {type(net).__name__} has none"
            )
        self.head_lr_scope = head_lr_scope
        if loss_average not in ("labelled", "all"):
            raise ValueError(f"invalid loss_average={loss_average!r}; expected 'labelled' or 'all'")
        self.loss_average = loss_average
        self.bias_lr_mult = bias_lr_mult
        self.bias_weight_decay = bias_weight_decay
        if isinstance(inference, dict):  # as a checkpoint's hyperparameters hold it
            inference = InferenceConfig(**inference)
        self.inference = inference or InferenceConfig()
        if isinstance(self.hparams.get("inference"), InferenceConfig):
            # Plain values only: LightningCLI's --ckpt_path reads them with weights_only=True.
            self.hparams["inference"] = dataclasses.asdict(self.inference)
        self.channels_last = channels_last
        self.compile = compile
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weight, persistent=False)
        self.measure_checkerboard = measure_checkerboard
        self._records: list[ImageRecord] = []
        self._train_loss_sum = torch.zeros((), dtype=torch.float64)
        self._train_loss_weight = torch.zeros((), dtype=torch.float64)
        self.last_eval: EvalResult | None = None
        """The last finished validation/test epoch's result (read by callbacks)."""
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # A plain attribute, not a submodule: the compiled wrapper (or ``net`` itself) must
        # not be registered as a second copy of ``net``. Set here only, so no __setattr__
        # override slows down Lightning's many attribute writes on the module.
        object.__setattr__(self, "_forward_fn", torch.compile(self.net) if compile else self.net)

    # ------------------------------------------------------------------ forward

    def forward(self, images: Tensor) -> Tensor | dict[str, Tensor]:
        """Run the net on normalized images."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self._forward_fn(images)

    def loss(self, logits: Tensor, masks: Tensor) -> Tensor:
        """Cross-entropy with ``ignore_index`` at the mask's resolution."""
        logits = resize_logits(logits, masks.shape[-2:])
        if self.loss_average == "all":  # mmseg: ignored pixels count in the denominator
            return F.cross_entropy(
                logits,
                masks,
                weight=self.class_weights,
                ignore_index=self.ignore_index,
                reduction="none",
            ).mean()
        return F.cross_entropy(
            logits, masks, weight=self.class_weights, ignore_index=self.ignore_index
        )

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step: main loss plus the weighted auxiliary loss."""
        images, masks = batch["image"], class_indices(batch["mask"])
        logits, aux = split_output(self(images))
        loss = self.loss(logits, masks)
        for extra in [aux] if isinstance(aux, Tensor) else aux or []:
            loss = loss + self.aux_weight * self.loss(extra, masks)
        if not torch.isfinite(loss):
            names = batch.get("name")
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}"
                + (f", images {list(names)}" if names is not None else "")
                + f"); {self._checkpoint_note()}"
            )
        batch_size = images.shape[0]
        # The epoch mean is kept here (no host sync) rather than by self.log(on_epoch=True),
        # which costs ~1 ms a step in Lightning's result collection (docs/performance.md).
        self._train_loss_sum += loss.detach().double() * batch_size
        self._train_loss_weight += batch_size
        if self._is_logging_step():
            self.log("train/loss_step", loss.detach(), prog_bar=True, batch_size=batch_size)
        return loss

    def _is_logging_step(self) -> bool:
        """Whether Lightning sends this training step's values to the loggers.

        Lightning keeps only the last ``self.log`` value of a step metric until its next
        logging step, and every call costs ~0.5 ms of result collection
        (``benchmarks/logging_cost.py``), so the step loss is logged on those steps only: the
        ones where ``global_step + 1`` is a multiple of ``log_every_n_steps`` (Lightning's
        rule, from public state; automatic optimization, one optimizer), the last one
        (``should_stop``), and every step of a ``fast_dev_run``.
        """
        trainer = self.trainer
        every = trainer.log_every_n_steps
        return (
            bool(trainer.fast_dev_run)
            or trainer.should_stop
            or (every > 0 and (trainer.global_step + 1) % every == 0)
        )

    def _checkpoint_note(self) -> str:
        """What a failed run leaves to resume from: the last checkpoint written, if any."""
        paths = {
            Path(path)
            for cb in self.trainer.checkpoint_callbacks
            for path in (getattr(cb, "last_model_path", ""), getattr(cb, "best_model_path", ""))
            if path and Path(path).is_file()
        }
        if paths:
            latest = max(paths, key=lambda p: p.stat().st_mtime)
            return f"the last good checkpoint is kept: {latest}"
        return "no checkpoint was written before it (nothing to resume from)"

    def on_train_epoch_start(self) -> None:  # noqa: D102
        self._train_loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._train_loss_weight = torch.zeros((), dtype=torch.float64, device=self.device)

    def on_train_epoch_end(self) -> None:
        """Log ``train/loss_epoch``: the mean training loss per image over every rank."""
        mean = self._mean_over_processes(self._train_loss_sum, self._train_loss_weight)
        if mean is not None:
            self.log("train/loss_epoch", mean, prog_bar=True)

    def _mean_over_processes(self, total: Tensor, weight: Tensor) -> Tensor | None:
        """``sum(total) / sum(weight)`` over every process (one reduce); None if no weight."""
        totals = self.trainer.strategy.reduce(torch.stack([total, weight]), reduce_op="sum")
        return (totals[0] / totals[1]).float() if totals[1] > 0 else None

    def configure_optimizers(self) -> dict[str, Any]:
        """Build the optimizer (see :meth:`build_optimizer`) and the per-step LR schedule."""
        optimizer = self.build_optimizer()
        scheduler = self.scheduler_factory(optimizer)
        if isinstance(scheduler, PolyLR) and scheduler.total_iters is None:
            scheduler.total_iters = max(1, int(self.trainer.estimated_stepping_batches))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer over up to four parameter groups: backbone / head x weights / biases.

        A group's learning rate is the optimizer's times ``head_lr_mult`` (parameters outside
        ``net.backbone``, when the net has one; with ``head_lr_scope="classifier"`` those of
        ``net.classifier_modules()``) times ``bias_lr_mult`` (biases: 1-D
        parameters named ``*bias``); biases get no weight decay when ``bias_weight_decay``
        is false. With the defaults there is one group per part that exists.

        Returns:
            The optimizer built by the ``optimizer`` factory, multipliers applied.
        """
        backbone = getattr(self.net, "backbone", None)
        backbone_ids = (
            {id(p) for p in backbone.parameters()} if isinstance(backbone, nn.Module) else set()
        )
        if self.head_lr_scope == "classifier":
            classifier_ids = {id(p) for m in self.net.classifier_modules() for p in m.parameters()}
            backbone_ids = {id(p) for p in self.net.parameters()} - classifier_ids
        split_biases = self.bias_lr_mult != 1.0 or not self.bias_weight_decay
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, param in self.net.named_parameters():
            if not param.requires_grad:
                continue
            is_bias = split_biases and param.ndim == 1 and name.endswith("bias")
            groups.setdefault((id(param) not in backbone_ids, is_bias), []).append(param)
        has_both_parts = {head for head, _ in groups} == {False, True}
        order = sorted(groups)  # backbone before head, weights before biases
        optimizer = self.optimizer_factory([{"params": groups[key]} for key in order])
        for (head, is_bias), group in zip(order, optimizer.param_groups):
            if head and has_both_parts:
                group["lr"] *= self.head_lr_mult
            if is_bias:
                group["lr"] *= self.bias_lr_mult
                if not self.bias_weight_decay:
                    group["weight_decay"] = 0.0
        return optimizer

    # --------------------------------------------------------------- evaluation
    def _raw_images(self, images: Tensor) -> Tensor | None:
        """Undo the datamodule's normalization (0..255 RGB) for the CRF."""
        if not self.inference.crf:
            return None
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is None or not hasattr(datamodule, "mean"):
            raise RuntimeError(
                "inference.crf needs a datamodule with `mean` and `std` to recover RGB"
            )
        mean = images.new_tensor(datamodule.mean).view(1, 3, 1, 1)
        std = images.new_tensor(datamodule.std).view(1, 3, 1, 1)
        return ((images * std + mean) * 255.0).clamp(0, 255)

    def predict_logits(self, images: Tensor) -> Tensor:
        """Log-probabilities at the images' size with the configured inference (CRF included)."""
        return predict_logits(self, images, self.inference, raw_images=self._raw_images(images))

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        """Score a batch: one record per image (confusion matrix, loss, checkerboard)."""
        if batch.get("name") is None and self.trainer.world_size > 1:
            raise ValueError(
                f"{stage} batches carry no 'name' (one unique name per image) under "
                f"{self.trainer.world_size} processes: an image that a distributed sampler "
                "repeats to even out the processes could not be told apart and would be scored "
                "twice. Return a 'name' with each sample (seglit's datasets do)."
            )
        images, masks = batch["image"], class_indices(batch["mask"])
        log_probs = predict_log_probs(self, images, self.inference)
        scored = resize_logits(log_probs, masks.shape[-2:])
        before_crf = None
        if self.inference.crf:
            before_crf = per_image_confusion(
                scored, masks, self.num_classes, self.ignore_index
            ).cpu()
            refined = refine_with_crf(log_probs, self._raw_images(images), self.inference)
            scored = resize_logits(refined, masks.shape[-2:])
        confmats = per_image_confusion(scored, masks, self.num_classes, self.ignore_index).cpu()
        pixel_loss = F.cross_entropy(
            scored,
            masks,
            weight=self.class_weights,
            ignore_index=self.ignore_index,
            reduction="none",
        )
        valid = masks != self.ignore_index
        weights = (
            valid.double()
            if self.class_weights is None
            else self.class_weights[masks.clamp(0, self.num_classes - 1)].double() * valid
        )
        loss_sums = pixel_loss.double().sum(dim=(-2, -1)).cpu()
        loss_weights = weights.sum(dim=(-2, -1)).cpu()
        checker = self._checkerboard(log_probs, valid, probabilities=True)
        checker_logits = self._checkerboard(log_probs, valid)
        rank = self.global_rank
        names = batch_image_names(batch) or [
            f"{stage}-rank{rank}-{len(self._records) + i}" for i in range(len(images))
        ]
        for i, name in enumerate(names):
            self._records.append(
                ImageRecord(
                    str(name),
                    confmats[i],
                    float(loss_sums[i]),
                    float(loss_weights[i]),
                    None if before_crf is None else before_crf[i],
                    float(checker[i]),
                    float(checker_logits[i]),
                )
            )

    def _checkerboard(
        self, log_probs: Tensor, valid: Tensor, probabilities: bool = False
    ) -> Tensor:
        """Per-image checkerboard score of ``log_probs`` (``(N, C, H, W)``), or of their
        probabilities with ``probabilities``, at the net's output stride (NaN when off)."""
        period = getattr(self.net, "output_stride", None) or 2
        if not self.measure_checkerboard or period < 2:
            return torch.full((log_probs.shape[0],), math.nan, dtype=torch.float64)
        maps = log_probs.exp() if probabilities else log_probs
        scores = []
        for probs, mask in zip(maps, valid):
            # a pad-collated image ends where its mask's last labelled row / column is
            rows, cols = mask.any(dim=1).nonzero(), mask.any(dim=0).nonzero()
            h = int(rows[-1]) + 1 if len(rows) else probs.shape[-2]
            w = int(cols[-1]) + 1 if len(cols) else probs.shape[-1]
            scores.append(checkerboard_score(probs[None, :, :h, :w], period)[0])
        return torch.stack(scores).cpu()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Score one validation batch at the label's original resolution."""
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Score one test batch at the label's original resolution."""
        self._eval_step(batch, "test")

    def on_validation_epoch_start(self) -> None:  # noqa: D102
        self._records = []

    def on_test_epoch_start(self) -> None:  # noqa: D102
        self._records = []

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self._finish_eval("val")

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self._finish_eval("test")

    def _finish_eval(self, stage: str) -> None:
        """Dataset-level metrics from every image scored, each exactly once, on every rank."""
        records = gather_unique_records(self._records)
        self._records = []
        if self.trainer.sanity_checking or not records:
            return
        self.last_eval = eval_result(
            records, stage, self.current_epoch, self.global_step, self.class_names
        )
        metrics = self.last_eval.metrics
        loss_weight = sum(r.loss_weight for r in records)
        logged = {
            f"{stage}/{key}": value for key, value in metrics.items() if not math.isnan(value)
        }
        if loss_weight > 0:
            logged[f"{stage}/loss"] = sum(r.loss_sum for r in records) / loss_weight
        logged.update(
            {
                f"{stage}/IoU/{name}": iou
                for name, iou in self.last_eval.iou.items()
                if not math.isnan(iou)
            }
        )
        mIoU = logged.pop(f"{stage}/mIoU", math.nan)  # NaN: no pixel was scored
        # Every rank holds the same gathered records, hence the same values: no sync needed.
        self.log_dict(logged, prog_bar=False, sync_dist=False)
        self.log(f"{stage}/mIoU", mIoU, prog_bar=True, sync_dist=False)

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Return label maps (and names) for a predict batch."""
        logits = self.predict_logits(batch["image"])
        out: dict[str, Any] = {"pred": logits.argmax(1).to(torch.uint8).cpu()}
        for key in ("name", "size"):
            if key in batch:
                out[key] = batch[key]
        return out
