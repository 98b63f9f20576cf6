"""CLI smoke test on generated tiny images: train -> evaluate -> predict -> summary."""

import csv
import json
import shutil

import pytest

from cnnkit.cli import main


@pytest.fixture
def trained(image_folder, tmp_path):
    out = tmp_path / "run"
    rc = main(["train", str(image_folder), "--model", "lenet5", "--epochs", "3", "--batch-size", "8",
               "--val-split", "0.25", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet",
               "--lr", "0.01"])
    assert rc == 0
    return out


def test_train_evaluate_predict(trained, image_folder, tmp_path, capsys):
    assert (trained / "best.safetensors").is_file() and (trained / "curves.png").is_file()
    capsys.readouterr()

    # the run's own data: its held-out validation split (9 of 36 images)
    assert main(["evaluate", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "accuracy" in out
    metrics = json.loads((trained / "eval_val_metrics.json").read_text())
    assert metrics["n"] == 9 and sum(map(sum, metrics["confusion_matrix"])) == 9
    # another folder: all of it
    other = tmp_path / "other"
    shutil.copytree(image_folder, other)
    assert main(["evaluate", str(trained), str(other), "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "eval_train_metrics.json").read_text())
    assert metrics["n"] == 36 and sum(map(sum, metrics["confusion_matrix"])) == 36
    assert metrics["accuracy"] > 0.5

    pred_csv = tmp_path / "pred.csv"
    assert main(["predict", str(trained / "best.safetensors"), str(image_folder / "stripes"), "--top-k", "2",
                 "--format", "csv", "-o", str(pred_csv)]) == 0
    rows = list(csv.DictReader(pred_csv.open()))
    assert len(rows) == 12 and all(r["class1"] in {"bright", "dark", "stripes"} for r in rows)
    assert all(0.0 <= float(r["prob1"]) <= 1.0 and float(r["prob1"]) >= float(r["prob2"]) for r in rows)

    assert "wrote 12 predictions" in capsys.readouterr().out
    assert main(["predict", str(trained), str(next((image_folder / "dark").iterdir())), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 1 and len(data[0]["top"]) == 3
    assert sum(t["prob"] for t in data[0]["top"]) == pytest.approx(1.0, abs=1e-4)


def test_predict_reports_bad_file(trained, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    rc = main(["predict", str(trained), str(bad)])
    out = capsys.readouterr().out
    assert rc == 1 and "broken.jpg" in out


def test_resume_from_cli(trained, image_folder, tmp_path, capsys):
    rc = main(["train", "--resume", str(trained), "--epochs", "4", "--quiet"])
    assert rc == 0
    history = json.loads((trained / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert "ignored" not in capsys.readouterr().err
    # settings that a resumed run cannot change are named, not silently dropped
    rc = main(["train", str(image_folder), "--resume", str(trained), "--epochs", "5", "--lr", "0.5",
               "--no-fast", "--hflip", "--quiet"])
    assert rc == 0
    assert "ignored: --lr --no-fast --hflip" in capsys.readouterr().err
    assert json.loads((trained / "config.json").read_text())["optim"]["lr"] == 0.01


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnkit: error:") and "nowhere" in err and "Traceback" not in err
    assert main(["evaluate", str(tmp_path / "nothing.safetensors"), "mnist-mini"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_summary_command(capsys):
    assert main(["summary", "cifar-cnn", "--image-size", "32", "--channels", "3", "--classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "Total params:" in out and "(None, 10)" in out


def test_resume_without_epochs_finishes_the_runs_own_epoch_count(image_folder, tmp_path):
    # `cnnkit train --resume RUN` after an interruption used to train to the default 15 epochs
    from cnnkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from cnnkit.train import train
    from cnnkit.train.callbacks import Callback

    class Crash(Callback):  # the process dies as epoch 3 begins
        def on_epoch_begin(self, epoch, steps):
            if epoch == 2:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    cfg = RunConfig(data=DataConfig(source=str(image_folder), cache_dir=str(tmp_path / "cache"), val_split=0.25),
                    model=ModelConfig(name="lenet5"),
                    train=TrainConfig(epochs=4, batch_size=8, out=str(out), progress=False, report=False))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[Crash()], explicit_out=True)
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2, 3, 4]


def test_step_schedule_settings_reach_the_config():
    # --schedule step used a fixed 10-epoch step: a no-op for any run of 10 epochs or fewer
    from cnnkit.cli import build_parser, run_config_from_args

    args = build_parser().parse_args(["train", "--schedule", "step", "--step-size", "2", "--gamma", "0.5"])
    optim = run_config_from_args(args).optim
    assert (optim.schedule, optim.step_size, optim.gamma) == ("step", 2, 0.5)


def test_sigterm_stops_training_cleanly_and_the_run_resumes(image_folder, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from cnnkit.inference.checkpoint import read_metadata

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cnnkit", "train", str(image_folder), "--model", "mlp", "--epochs", "500",
           "--batch-size", "8", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet", "--no-report"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "train_state.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # as `kill`, docker stop or a scheduler's time limit do
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "cnnkit: terminated" in err and "Traceback" not in err
    assert json.loads(read_metadata(out / "last.safetensors")["info"])["epoch"] >= 1  # the last saved epoch is whole
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
