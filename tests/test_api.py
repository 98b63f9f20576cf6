"""The Python API in a few lines, as the package docstring shows it."""

import numpy as np
import pytest

import cnnkit
from cnnkit.errors import ConfigError


def test_make_config_maps_flat_names():
    cfg = cnnkit.make_config(data="digits", model="lenet5", epochs=2, seed=3, optimizer="sgd", lr=0.01,
                             image_size=[16, 16], augment="light", patience=2)
    assert (cfg.data.source, cfg.model.name, cfg.train.epochs, cfg.optim.name, cfg.optim.lr) == \
        ("digits", "lenet5", 2, "sgd", 0.01)
    assert cfg.data.seed == cfg.train.seed == 3 and cfg.data.image_size == (16, 16)
    assert cfg.augment.preset == "light" and cfg.train.patience == 2
    with pytest.raises(ConfigError, match="unknown setting 'epoch'"):
        cnnkit.make_config(epoch=3)


def test_train_evaluate_predict_in_python(tmp_path):
    from PIL import Image

    cfg = cnnkit.make_config(data="digits", model="lenet5", epochs=3, batch_size=32, out=str(tmp_path / "run"),
                             progress=False, image_size=(12, 12))
    result = cnnkit.train_model(cfg, explicit_out=True)
    assert result.metrics["split"] == "test" and result.metrics["accuracy"] > 0.5
    metrics, probs, data = cnnkit.evaluate_model(result.run_dir, "digits")
    assert metrics["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-6)
    assert probs.shape == (len(data), 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    img = tmp_path / "digit.png"
    Image.fromarray(data.images[0][..., 0]).save(img)
    [pred] = cnnkit.predict(result.run_dir, [img], top_k=2)
    assert len(pred.top) == 2 and pred.top[0][0] in [str(i) for i in range(10)]
