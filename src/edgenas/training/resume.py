"""Per-epoch resume of `edgenas.training.loop.train`: what a checkpoint holds and whose it is.

Why its own module: a long training (final training, DARTS' evaluation training) killed at hour
ten must continue from its last finished epoch, bit for bit on CPU, and a checkpoint that belongs
to another run must be refused before anything is trained or written. The loop calls `loop_state`
after each epoch and `restore_loop` once at the start; `EpochCheckpoint` owns the file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from edgenas.errors import UserError


class Resumable(Protocol):
    """A caller's running state saved with the loop's (e.g. DARTS' per-epoch history): tensors and
    plain Python values only, so the checkpoint loads with `weights_only=True`."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class EpochCheckpoint:
    """Where `train` keeps its per-epoch resume state, and what run that state belongs to.

    - `path`: the file (`torch_save_atomic` after every finished epoch; a kill leaves the last
      whole one). It holds the model's and optimizer's state_dicts, the step and epoch counters
      (the cosine schedule's position), the torch / loader-generator / Python / CUDA RNG states,
      the running `TrainStats` and `extra.state_dict()`.
    - `identity`: plain JSON-like values naming the run (architecture, data, config...). A file of
      another identity is refused with one line (`UserError`) before anything is trained or written.
    - `extra`: the caller's own state to save and restore with the loop's (None: nothing).

    `load()` reads the file once (with `weights_only=True`: a run directory may come from someone
    else) and checks it; call it early to refuse a foreign file before slow work.
    """

    FORMAT = "edgenas-train-resume"
    VERSION = 1

    def __init__(self, path: str | Path, identity: dict[str, Any], extra: Resumable | None = None,
                 what: str = "training") -> None:
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity))  # plain values, compared as saved
        self.extra = extra
        self.what = what
        self._loaded: dict[str, Any] | None = None

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, Any] | None:
        """The saved state (None when there is no file yet); UserError for a foreign or other run's file."""
        if self._loaded is not None or not self.exists():
            return self._loaded
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - an unreadable file is the same answer, whatever broke
            raise UserError(f"cannot resume from {self.path} ({type(error).__name__}); delete it to start "
                            f"this {self.what} over, or use another --out") from None
        if not isinstance(state, dict) or state.get("format") != self.FORMAT:
            raise UserError(f"{self.path} is not an edgenas resume checkpoint; delete it to start this "
                            f"{self.what} over, or use another --out")
        saved = state.get("identity")
        if saved != self.identity:
            changed = _differences(saved if isinstance(saved, dict) else {}, self.identity)
            raise UserError(f"{self.path} belongs to another {self.what} (differs in: {', '.join(changed)}); "
                            f"rerun with the same options, use another --out, or delete it to start over")
        self._loaded = state
        return state

    def save(self, state: dict[str, Any]) -> Path:
        from edgenas.util.atomic import torch_save_atomic

        state = {"format": self.FORMAT, "version": self.VERSION, "identity": self.identity, **state}
        if self.extra is not None:
            state["extra"] = self.extra.state_dict()
        torch_save_atomic(state, self.path)
        self._loaded = None  # the file is newer than what was read
        return self.path

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self._loaded = None


def _differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys (dotted into nested dicts) whose values differ between two identities."""
    changed = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed or ["its format"]


def data_fingerprint(*tensors: torch.Tensor) -> str:
    """A CRC-32 of the tensors' bytes (their images and labels): an identity can name its data
    without storing it. About 1 s per GB, once per run."""
    import zlib

    crc = 0
    for tensor in tensors:
        array = tensor.detach().cpu().contiguous().numpy()
        crc = zlib.crc32(array.reshape(-1).view("uint8"), crc)
    return f"{crc:08x}"


def _loader_generator(loader: Any) -> torch.Generator | None:
    generator = getattr(loader, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def loop_state(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Any, device: torch.device,
               epoch: int, step: int, steps_per_epoch: int, total: int, stats: dict[str, Any]) -> dict[str, Any]:
    """Everything the loop needs to continue after `epoch` epochs and `step` steps."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    generator = _loader_generator(loader)
    if generator is not None:
        rng["loader"] = generator.get_state()
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "epoch": epoch, "step": step, "steps_per_epoch": steps_per_epoch, "total_steps": total,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng,
        "stats": dict(stats),
    }


def restore_loop(state: dict[str, Any], checkpoint: EpochCheckpoint, model: nn.Module,
                 optimizer: torch.optim.Optimizer, loader: Any, device: torch.device, steps_per_epoch: int,
                 total: int) -> tuple[int, int, dict[str, Any]]:
    """Put the saved loop state back; (epochs done, steps done, the running stats as saved)."""
    if (state.get("steps_per_epoch"), state.get("total_steps")) != (steps_per_epoch, total):
        raise UserError(
            f"{checkpoint.path} belongs to another {checkpoint.what} ({state.get('steps_per_epoch')} steps per "
            f"epoch and {state.get('total_steps')} in all, this one {steps_per_epoch} and {total}); rerun "
            f"with the same options, use another --out, or delete it to start over")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        generator = _loader_generator(loader)
        if generator is not None:
            generator.set_state(rng["loader"])
        if device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], device)
        if checkpoint.extra is not None:
            checkpoint.extra.load_state_dict(state["extra"])
        return int(state["epoch"]), int(state["step"]), dict(state["stats"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"cannot resume from {checkpoint.path} ({first}); delete it to start this "
                        f"{checkpoint.what} over, or use another --out") from None
