"""Expert segmentation models through MONAI: a TorchScript file, a state dict plus a network spec, or a
MONAI bundle folder; sliding-window inference, batched, on CUDA when present.

The default runs no code from the model files: a state dict read with `torch.load(weights_only=True)`
into an allow-listed `monai.networks.nets` class built from plain arguments. TorchScript is code, and a
MONAI bundle's config is parsed with expression evaluation: both need `trust_code: true` on the
source's expert, checked when the sources file is validated and again here before anything is loaded.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.ids import sha256_file
from medtrinity_core.sources.schema import ALLOWED_NETWORKS, CODE_KINDS, ExpertSpec

if TYPE_CHECKING:
    import torch


def _load_weights(path: Path) -> dict:
    import torch  # heavy: imported where a model is loaded, so loading the Definitions stays fast

    return torch.load(path, map_location="cpu", weights_only=True)


def _bundle_network(folder: Path) -> tuple[torch.nn.Module, Path]:
    import torch
    from monai.bundle import ConfigParser

    configs = [folder / "configs" / name for name in ("inference.json", "inference.yaml", "train.json")]
    config = next((c for c in configs if c.exists()), None)
    if config is None:
        raise MedtrinityError(f"MONAI bundle {folder} has no configs/inference.json or .yaml")
    parser = ConfigParser()
    parser.read_config(str(config))
    ts = folder / "models" / "model.ts"
    if ts.exists():
        return torch.jit.load(str(ts), map_location="cpu"), ts
    weights = folder / "models" / "model.pt"
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(_load_weights(weights))
    return net, weights


def load_network(spec: ExpertSpec) -> tuple[torch.nn.Module, Path]:
    if spec.kind in CODE_KINDS and not spec.trust_code:
        raise MedtrinityError(f"expert kind {spec.kind} runs code from {spec.path} on load; the source must set trust_code: true")
    import torch

    if spec.kind == "torchscript":
        return torch.jit.load(str(spec.path), map_location="cpu"), spec.path
    if spec.kind == "state_dict":
        from monai.networks import nets

        if spec.network not in ALLOWED_NETWORKS:
            raise MedtrinityError(f"network {spec.network} is not one of the allow-listed {', '.join(ALLOWED_NETWORKS)}")
        net_class = getattr(nets, spec.network)
        net = net_class(**json.loads(spec.network_args))
        net.load_state_dict(_load_weights(spec.path))
        return net, spec.path
    return _bundle_network(spec.path)


class ExpertModel:
    """Predicts a label map and a per-pixel confidence for each 8-bit image."""

    def __init__(self, spec: ExpertSpec):
        import torch

        self.spec = spec
        cuda = torch.cuda.is_available()
        self.device = torch.device(("cuda" if cuda else "cpu") if spec.device == "auto" else spec.device)
        net, weights = load_network(spec)
        self.net = net.to(self.device).eval()
        self.model_id = f"{spec.kind}:{spec.path.name}@{sha256_file(weights)[:12]}"

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        import torch

        pixels = image.astype(np.float32) / 255.0
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[None], self.spec.in_channels, axis=0)
        elif self.spec.in_channels == 1:
            pixels = pixels.mean(axis=2)[None]
        else:
            pixels = np.transpose(pixels, (2, 0, 1))
        return torch.from_numpy(np.ascontiguousarray(pixels))

    def predict(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        with torch.no_grad():
            return self._predict(images)

    def _predict(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch
        from monai.inferers import sliding_window_inference

        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(images)
        by_shape: dict[tuple, list[int]] = {}
        for i, img in enumerate(images):
            by_shape.setdefault(img.shape[:2], []).append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.spec.batch_size):
                batch = indices[start : start + self.spec.batch_size]
                x = torch.stack([self._tensor(images[i]) for i in batch]).to(self.device)
                logits = sliding_window_inference(x, self.spec.roi_size, self.spec.sw_batch_size, self.net, overlap=self.spec.overlap)
                if logits.shape[1] == 1:
                    prob = torch.sigmoid(logits[:, 0])
                    labels = (prob > 0.5).to(torch.int64)
                    confidence = torch.where(labels.bool(), prob, 1 - prob)
                else:
                    probs = torch.softmax(logits, dim=1)
                    confidence, labels = probs.max(dim=1)
                for j, i in enumerate(batch):
                    out[i] = (labels[j].cpu().numpy(), confidence[j].float().cpu().numpy())
        return out  # type: ignore[return-value]


@lru_cache(maxsize=4)
def expert_model(spec: ExpertSpec) -> ExpertModel:
    """One loaded model per process and spec."""
    return ExpertModel(spec)


def load_expert(spec: ExpertSpec) -> tuple[ExpertModel | None, str | None]:
    """(model, None), or (None, why) when the model cannot be loaded: the images it was to segment are
    then quarantined as `roi_error` with that reason, and the partition goes on."""
    try:
        return expert_model(spec), None
    except Exception as exc:  # noqa: BLE001 - torch and MONAI raise anything on a bad model file
        return None, f"expert model {spec.path.name} could not be loaded: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
