"""The one uint8 -> model-input conversion, shared by training, evaluation, serving and explaining.

Images travel as uint8 (decoded once, cached, uploaded); a model sees float (N, C, H, W)
scaled to [0, 1] and normalised by the per-channel mean/std saved in :class:`Preprocess`.
Training augments between the two steps (``scale`` then ``normalize``); everyone else calls
the object itself, which does both.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cnnkit.config import Preprocess

__all__ = ["ImageInputs", "Preprocess"]

LAYOUTS = ("NCHW", "NHWC")


class ImageInputs:
    """uint8 batches -> model inputs: scale to [0,1] (before augmenting), then normalise."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
                 channels_last: bool = False):
        device = torch.device(device)
        # (x - mean) / std as one fused x * scale + shift (a single pass, a single new tensor)
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale_ = 1.0 / std_t
        self.shift = -torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) / std_t
        self.device = device
        self.channels_last = channels_last

    @classmethod
    def from_preprocess(cls, pre: Preprocess, device: torch.device | str = "cpu",
                        channels_last: bool = False) -> "ImageInputs":
        return cls(pre.mean, pre.std, device, channels_last)

    def scale(self, xb: torch.Tensor) -> torch.Tensor:
        # xb: uint8 (B,C,H,W) with NHWC strides -> float (B,C,H,W) in [0,1], keeping the strides
        x = xb.float().div_(255.0)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale_)

    def __call__(self, images: torch.Tensor | np.ndarray, layout: str = "NCHW") -> torch.Tensor:
        """uint8 (B,C,H,W) (``layout="NCHW"``) or (B,H,W,C) (``"NHWC"``, as decoders return them),
        a tensor or a numpy array -> normalised float (B,C,H,W) on this object's device."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        if isinstance(images, np.ndarray):
            # a copy: decoded images can be read-only views, which torch.from_numpy warns about
            images = torch.from_numpy(np.array(images, dtype=np.uint8))
        if layout == "NHWC":
            images = images.permute(0, 3, 1, 2)  # a view: NHWC strides, NCHW shape
        return self.normalize(self.scale(images.to(self.device)))
