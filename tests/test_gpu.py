"""The CUDA paths: GPU-resident data, autocast (bf16, and fp16 with loss scaling), torch.compile, and
checkpoints that move between GPU and CPU.  Marked ``gpu``: deselected by default, run with
``python -m pytest -m gpu`` on a machine with a CUDA device (they skip cleanly without one).
"""

import numpy as np
import pytest
import torch

from cnnkit.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from cnnkit.data.loader import BatchLoader
from cnnkit.inference import load_predictor
from cnnkit.train import train
from cnnkit.train.loop import RunningMeans

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def cfg(tmp_path, name: str, **train_kw) -> RunConfig:
    tk = dict(epochs=4, batch_size=16, out=str(tmp_path / name), progress=False, seed=1, report=False, device="cuda")
    tk.update(train_kw)
    return RunConfig(data=DataConfig(source="shapes"), model=ModelConfig(name="cifar-cnn-bn"),
                     optim=OptimConfig(name="adam", lr=3e-3), train=TrainConfig(**tk))


def test_small_sets_live_on_the_gpu(shapes_splits):
    loader = BatchLoader(shapes_splits.train, 16, torch.device("cuda"), shuffle=True)
    assert loader.images.is_cuda and loader.labels.is_cuda
    xb, yb = next(loader.batches(0))
    assert xb.is_cuda and yb.is_cuda and xb.dtype == torch.uint8 and xb.is_contiguous(memory_format=torch.channels_last)


def test_running_means_stay_on_the_gpu():
    means = RunningMeans(torch.device("cuda"))
    means.add(torch.tensor(2.0, device="cuda"), torch.tensor([1, 1], device="cuda"),
              torch.tensor([1, 0], device="cuda"))
    assert means.sums.is_cuda and dict(means) == {"loss": pytest.approx(2.0), "acc": pytest.approx(0.5)}


@pytest.mark.parametrize("amp,compile_", [("auto", "off"), ("fp16", "off"), ("auto", "on")])
def test_trains_on_cuda(tmp_path, shapes_splits, amp, compile_):
    result = train(cfg(tmp_path, "run", amp=amp, compile=compile_), splits=shapes_splits, explicit_out=True)
    assert all(np.isfinite(r["loss"]) for r in result.history)
    assert result.metrics["accuracy"] >= 0.9
    assert next(result.model.parameters()).is_cuda


def test_gpu_checkpoint_predicts_the_same_on_cpu(tmp_path, shapes_splits):
    result = train(cfg(tmp_path, "run", amp="off"), splits=shapes_splits, explicit_out=True)
    images = shapes_splits.test.images[:8]
    on_gpu = load_predictor(result.run_dir, device="cuda").probs(images)
    on_cpu = load_predictor(result.run_dir, device="cpu").probs(images)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-3)  # TF32 convolutions on the GPU
    assert (on_gpu.argmax(1) == on_cpu.argmax(1)).all()


def test_same_seed_gives_the_same_accuracy_on_cuda(tmp_path, shapes_splits):
    # cuDNN may pick non-deterministic kernels, so compare outcomes, not bits
    a = train(cfg(tmp_path, "a", amp="off"), splits=shapes_splits, explicit_out=True)
    b = train(cfg(tmp_path, "b", amp="off"), splits=shapes_splits, explicit_out=True)
    assert a.metrics["accuracy"] == pytest.approx(b.metrics["accuracy"], abs=0.05)
