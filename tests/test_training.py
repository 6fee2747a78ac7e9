"""The training loop (SGD, cosine, callbacks, divergence) and the proxy-training evaluator."""

from __future__ import annotations

import math
import pickle
import random
import statistics
import time
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from edgenas.blocks import ConvBnAct
from edgenas.data import Augment, BatchLoader, ImageDataset, load_dataset
from edgenas.errors import UserError
from edgenas.spaces import fitted_space
from edgenas.spaces.mnas import BaseStage
from edgenas.training import (
    TrainConfig,
    TrainingDiverged,
    cosine_lr,
    evaluate,
    recalibrate_batchnorm,
    scheduled_lr,
    train,
)
from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator

torch.set_num_threads(1)

# A two-block MnasNet space at 8x8: the real space and builder, small enough for a test.
TINY_SPACE = {
    "base_stages": (BaseStage(8, 1, 1), BaseStage(16, 1, 2)),
    "width_multipliers": (0.5, 1.0),
    "layer_deltas": (0, 1),
}


@pytest.fixture(scope="module")
def digits8() -> ImageDataset:
    return load_dataset("digits8")


def small_cnn(channels: int = 1, classes: int = 10) -> nn.Module:
    return nn.Sequential(ConvBnAct(channels, 8, 3), ConvBnAct(8, 16, 3, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))


def tiny_space8():
    """TINY_SPACE fitted to the 8x8 digits (one channel, ten classes)."""
    return fitted_space("mnas", (1, 8, 8), 10, **TINY_SPACE)


def proxy_evaluator(config: ProxyConfig) -> ProxyTrainingEvaluator:
    return ProxyTrainingEvaluator(config, tiny_space8())


def proxy_config(**changes) -> ProxyConfig:
    values = dict(dataset="digits8", subset=600, val_fraction=0.25,
                  train=TrainConfig(max_steps=40, batch_size=32, lr=0.05), eval_batch_size=128,
                  augment=Augment(crop_padding=1), bn_recalibration_batches=5, device="cpu")
    values.update(changes)
    return ProxyConfig(**values)


# ---- the loop ---------------------------------------------------------------------------------

def test_cosine_schedule_endpoints_and_shape() -> None:
    assert cosine_lr(0, 100, 0.1, 0.001) == pytest.approx(0.1)
    assert cosine_lr(50, 100, 0.1, 0.001) == pytest.approx(0.0505)
    assert cosine_lr(100, 100, 0.1, 0.001) == pytest.approx(0.001)
    values = [cosine_lr(s, 100, 0.1, 0.0) for s in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_the_warm_up_ramps_the_cosine_linearly_then_leaves_it() -> None:
    config = TrainConfig(lr=0.1, lr_warmup=0.1)  # 10 of 100 steps
    assert scheduled_lr(0, 100, config) == pytest.approx(0.01)  # 1/10 of cosine(0) = 0.1
    assert scheduled_lr(4, 100, config) == pytest.approx(0.5 * cosine_lr(4, 100, 0.1, 0.0))
    assert scheduled_lr(9, 100, config) == pytest.approx(cosine_lr(9, 100, 0.1, 0.0))
    assert scheduled_lr(50, 100, config) == pytest.approx(0.05)
    assert scheduled_lr(0, 100, TrainConfig(lr=0.1)) == pytest.approx(0.1)  # none by default
    assert "lr_warmup" not in TrainConfig().to_dict()  # stored runs from before it still resume
    assert TrainConfig(lr_warmup=0.2).to_dict()["lr_warmup"] == 0.2
    with pytest.raises(UserError, match="warm-up"):
        TrainConfig(lr_warmup=1.0)


def test_the_loop_takes_its_first_step_at_the_warmed_up_rate(digits8: ImageDataset) -> None:
    """Without momentum or weight decay a step moves the weights by lr x gradient, so the first
    step of 8 warmed up over half of them (4 steps) moves them a quarter as far as without."""
    data = digits8.subset(64, seed=0)  # one batch: an epoch is one step

    def first_step(warmup: float) -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        before = model[1].weight.detach().clone()
        moved: list[torch.Tensor] = []
        train(model, BatchLoader(data, 64, shuffle=False),
              TrainConfig(epochs=8, lr=0.1, momentum=0.0, weight_decay=0.0, lr_warmup=warmup), progress=False,
              epoch_end_callback=lambda epoch, m, stats: moved.append(m[1].weight.detach() - before))
        return moved[0]

    plain, warmed = first_step(0.0), first_step(0.5)
    assert plain.abs().max() > 0
    assert torch.allclose(warmed, plain / 4, atol=1e-7)


def test_train_learns_and_reports(digits8: ImageDataset) -> None:
    train_part, val_part = digits8.split(0.8, seed=0)
    loader = BatchLoader(train_part, 32, augment=Augment(crop_padding=1), seed=0)
    val = BatchLoader(val_part, 256, shuffle=False, mean=loader.mean, std=loader.std)
    torch.manual_seed(0)
    model = small_cnn()
    before, _ = evaluate(model, val)
    stats = train(model, loader, TrainConfig(epochs=3, lr=0.1, label_smoothing=0.1), progress=False)
    # MnasNet's BatchNorm momentum (0.01) leaves running averages stale after 135 steps.
    recalibrate_batchnorm(model, BatchLoader(train_part, 64, mean=loader.mean, std=loader.std), 10)
    after, loss = evaluate(model, val)
    assert stats.epochs == 3 and stats.steps == 3 * len(loader)
    assert stats.images == 3 * len(train_part) and stats.images_per_second > 0
    assert stats.epoch_losses[-1] < stats.epoch_losses[0]
    assert after > 0.4 and after > before + 0.25, (before, after)
    assert math.isfinite(loss)


def test_a_plain_dataloader_trains_and_evaluates_like_batchloader(digits8: ImageDataset) -> None:
    """A user's own DataLoader (host tensors, no `device`) works with the same loop: the model
    stays where it is and each batch is brought to it."""
    data = digits8.subset(512, seed=0)
    loader = BatchLoader(data, 64, shuffle=False)
    images = torch.cat([x for x, _ in loader])
    labels = torch.cat([y for _, y in loader])
    plain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=64)

    def run(batches) -> tuple[torch.Tensor, float]:
        torch.manual_seed(0)
        model = small_cnn()
        stats = train(model, batches, TrainConfig(epochs=3, lr=0.1), progress=False)
        assert stats.images == 3 * len(images) and stats.epoch_losses[-1] < stats.epoch_losses[0]
        return torch.cat([p.detach().flatten() for p in model.parameters()]), evaluate(model, batches)[1]

    # The copy itself, to a device other than the host's ("meta": shapes only, no data).
    from edgenas.training.loop import _to_device

    moved = _to_device(images[:2], labels[:2], torch.device("meta"))
    assert [t.device.type for t in moved] == ["meta", "meta"] and moved[0].shape == images[:2].shape

    weights, loss = run(plain)
    batch_weights, batch_loss = run(loader)
    assert torch.allclose(weights, batch_weights, atol=1e-5) and loss == pytest.approx(batch_loss, rel=1e-4)


def test_max_steps_runs_past_epochs_and_callbacks_fire_in_order(digits8: ImageDataset) -> None:
    loader = BatchLoader(digits8.subset(200, seed=0), 64, drop_last=True)  # 3 batches per epoch
    events: list[tuple[str, int]] = []
    config = TrainConfig(epochs=1, max_steps=7, lr=0.05, min_lr=0.01)
    stats = train(small_cnn(), loader, config, progress=True,  # the rich bar must not disturb the run
                  epoch_callback=lambda e, m: events.append(("start", e)),
                  epoch_end_callback=lambda e, m, s: events.append(("end", s.steps)))
    assert stats.steps == 7 and stats.epochs == 3
    assert events == [("start", 0), ("end", 3), ("start", 1), ("end", 6), ("start", 2), ("end", 7)]


def test_train_is_deterministic_on_cpu(digits8: ImageDataset) -> None:
    data = digits8.subset(256, seed=0)

    def run() -> torch.Tensor:
        torch.manual_seed(3)
        model = nn.Sequential(small_cnn(), nn.Dropout(0.3))
        loader = BatchLoader(data, 32, augment=Augment(crop_padding=1, flip=True, cutout=2), seed=1)
        train(model, loader, TrainConfig(max_steps=10, seed=4), progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run(), run())


def test_a_checkpointed_run_resumes_mid_run_to_the_same_weights_and_stats(digits8: ImageDataset, tmp_path) -> None:
    """The loop's own resume hook: stopped after epoch 2 of a max_steps run whose last epoch is
    partial, resumed from the checkpoint; the caller's extra state comes back with it."""
    from edgenas.training.resume import EpochCheckpoint

    data = digits8.subset(200, seed=0)
    config = TrainConfig(epochs=1, max_steps=8, lr=0.05, seed=4)  # 3 + 3 + 2 steps

    class Seen:
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def state_dict(self) -> dict:
            return {"epochs": list(self.epochs)}

        def load_state_dict(self, state: dict) -> None:
            self.epochs[:] = state["epochs"]

    class Stop(Exception):
        pass

    def run(path, stop_at=None):
        torch.manual_seed(3)
        model = nn.Sequential(small_cnn(), nn.Dropout(0.3))
        loader = BatchLoader(data, 64, augment=Augment(crop_padding=1, flip=True, cutout=2), seed=1,
                             drop_last=True)
        seen = Seen()
        checkpoint = EpochCheckpoint(path, {"test": "resume"}, extra=seen)

        def end(epoch, m, s):
            seen.epochs.append(epoch)
            if epoch == stop_at:
                raise Stop  # before this epoch's checkpoint: epoch 1's is the last one written

        stats = train(model, loader, config, epoch_end_callback=end, checkpoint=checkpoint, progress=False)
        return model, stats, seen

    torch.manual_seed(3)
    plain = nn.Sequential(small_cnn(), nn.Dropout(0.3))
    plain_stats = train(plain, BatchLoader(data, 64, augment=Augment(crop_padding=1, flip=True, cutout=2), seed=1,
                                           drop_last=True), config, progress=False)
    model, stats, seen = run(tmp_path / "a.pt")
    assert torch.load(tmp_path / "a.pt", weights_only=True)["epoch"] == 3 and seen.epochs == [0, 1, 2]
    for a, b in zip(model.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)  # checkpointing changes nothing in the run
    with pytest.raises(Stop):
        run(tmp_path / "b.pt", stop_at=2)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 6
    resumed, resumed_stats, resumed_seen = run(tmp_path / "b.pt")
    for a, b in zip(resumed.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed_seen.epochs == [0, 1, 2]  # restored [0, 1], then only the last epoch ran
    assert resumed_stats.epoch_losses == stats.epoch_losses == plain_stats.epoch_losses
    assert (resumed_stats.steps, resumed_stats.images) == (stats.steps, stats.images) == (8, 512)
    with pytest.raises(UserError, match="belongs to another training"):
        EpochCheckpoint(tmp_path / "b.pt", {"test": "other"}).load()


class WithAux(nn.Module):
    """A model that returns (logits, auxiliary logits), as DARTS' evaluation network does."""

    def __init__(self) -> None:
        super().__init__()
        self.body = small_cnn()
        self.aux = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor):
        return self.body(x), self.aux(x)


def test_loss_fn_handles_auxiliary_outputs(digits8: ImageDataset) -> None:
    loader = BatchLoader(digits8.subset(256, seed=0), 32)
    seen = []

    def loss_fn(outputs, targets):
        logits, aux = outputs
        seen.append(aux.shape)
        return nn.functional.cross_entropy(logits, targets) + 0.4 * nn.functional.cross_entropy(aux, targets)

    model = WithAux()
    stats = train(model, loader, TrainConfig(max_steps=20, lr=0.05), loss_fn=loss_fn, progress=False)
    recalibrate_batchnorm(model, loader, 5)
    accuracy, _ = evaluate(model, loader)  # reads the main logits of the tuple
    assert seen and seen[0] == (32, 10) and stats.steps == 20
    assert 0.2 < accuracy <= 1.0


def test_nan_loss_raises_training_diverged(digits8: ImageDataset) -> None:
    loader = BatchLoader(digits8.subset(256, seed=0), 32)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(TrainingDiverged, match="loss became"):
        train(model, loader, TrainConfig(max_steps=40, lr=1e30, momentum=0.0), progress=False)


def test_evaluate_matches_a_direct_count(digits8: ImageDataset) -> None:
    loader = BatchLoader(digits8.subset(300, seed=0), 64, shuffle=False)
    torch.manual_seed(0)
    model = small_cnn().eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    accuracy, _ = evaluate(model, loader)
    assert accuracy == correct / total


def test_batchnorm_recalibration_is_the_plain_average(digits8: ImageDataset) -> None:
    loader = BatchLoader(digits8.subset(256, seed=0), 64, shuffle=False)
    model = nn.Sequential(nn.BatchNorm2d(1, momentum=0.01), nn.Flatten(), nn.Linear(64, 10))
    recalibrate_batchnorm(model, loader, batches=3)
    batch_means = [x.mean().item() for i, (x, _) in enumerate(loader) if i < 3]
    assert model[0].running_mean.item() == pytest.approx(statistics.mean(batch_means), abs=1e-5)
    assert model[0].momentum == 0.01  # restored


def test_train_config_rejects_bad_settings() -> None:
    with pytest.raises(UserError):
        TrainConfig(lr=0)
    with pytest.raises(UserError):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(UserError):
        TrainConfig(max_steps=0)


# ---- the proxy evaluator -------------------------------------------------------------------

@dataclass
class Timed:
    median_ms: float


class ForwardTimer:
    """A real latency source: times the built network's forward pass (median of 5 runs)."""

    def __init__(self, space) -> None:
        self.space = space

    def latency(self, arch: str) -> Timed:
        model = self.space.build(arch).eval()
        x = torch.zeros(1, 1, 8, 8)
        times = []
        with torch.no_grad():
            for _ in range(5):
                start = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - start) * 1e3)
        return Timed(statistics.median(times))


class DeviceGone:
    def latency(self, arch: str):
        raise ConnectionError("device offline")


def test_proxy_evaluator_scores_deterministically_with_latency() -> None:
    evaluator = proxy_evaluator(proxy_config())
    space = evaluator.space
    assert space.config.resolution == 8 and space.config.network.in_channels == 1
    arch = space.sample(random.Random(0))
    evaluator.latency_source = ForwardTimer(space)
    first = evaluator.evaluate(arch)
    assert first.ok, first.error
    assert 0.6 < first.accuracy <= 1.0  # far above 10 % chance after 40 steps
    assert first.latency_ms is not None and first.latency_ms > 0
    metrics = first.metrics
    assert metrics["params"] > 0 and metrics["macs"] > 0 and metrics["train_steps"] == 40
    assert metrics["val_images"] == 150 and metrics["train_seconds"] > 0
    # A fresh evaluator (and one rebuilt from its plain dict, as a Ray worker would) agrees exactly.
    again = ProxyTrainingEvaluator.from_dict(evaluator.to_dict(), tiny_space8()).evaluate(arch)
    assert again.ok, again.error
    assert (again.accuracy, again.metrics["train_loss"], again.metrics["val_loss"]) == (
        first.accuracy, metrics["train_loss"], metrics["val_loss"])


def test_proxy_evaluator_pickles_without_data() -> None:
    evaluator = proxy_evaluator(proxy_config(train=TrainConfig(max_steps=5, batch_size=32)))
    arch = evaluator.space.sample(random.Random(1))
    before = evaluator.evaluate(arch)
    blob = pickle.dumps(evaluator)
    assert len(blob) < 5_000  # settings only, the images are re-read in the worker
    after = pickle.loads(blob).evaluate(arch)
    assert before.ok and after.accuracy == before.accuracy


def test_proxy_failures_are_results_with_reasons() -> None:
    evaluator = proxy_evaluator(proxy_config(train=TrainConfig(max_steps=5, batch_size=32)))
    arch = evaluator.space.sample(random.Random(2))

    too_deep = "ds_r1_k3_s2_c8 ir_r1_k3_s2_e3_c16 ir_r1_k3_s2_e3_c16 ir_r1_k3_s2_e3_c16"
    result = evaluator.evaluate(too_deep)
    assert not result.ok and "resolution 8" in result.error

    result = evaluator.evaluate("not an arch")
    assert not result.ok and result.error

    evaluator.latency_source = DeviceGone()
    result = evaluator.evaluate(arch)
    assert not result.ok and result.error == "latency: ConnectionError: device offline"
    assert result.metrics["params"] > 0

    diverging = proxy_evaluator(proxy_config(
        train=TrainConfig(max_steps=30, batch_size=32, lr=1e30, momentum=0.0)))
    result = diverging.evaluate(arch)
    assert not result.ok and result.error.startswith("diverged: loss became")


def test_proxy_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(UserError, match="unknown proxy settings epochz"):
        ProxyConfig.from_dict({"epochz": 3})
    config = ProxyConfig.from_dict({"train": {"epochs": 2, "lr": 0.1}, "augment": {"flip": True}})
    assert config.train.epochs == 2 and config.augment.flip
