"""The automatic default: a race of candidates under one time budget, in one run folder.

``cnnkit train FOLDER`` with no model named (``--model auto``) measures instead of guessing.  This
module owns the whole run: the run folder and its lock (held from start to end), one clock for the
``--time`` budget (describing and decoding the data included), the candidate list and the
selection.  :func:`cnnkit.train.train` trains each candidate as one explicit config and knows
nothing of the race; :mod:`cnnkit.train.candidates` says what each candidate is and costs.

The race, cheapest estimates first (each candidate's cost predicted from what this run has
measured so far, and a candidate whose predicted cost does not fit the time left is not started):

1. **estimates**: the from-scratch net (small images only), with and without flips, a few epochs
   each on at most a sample of the training images; EfficientNet-Lite0 bottleneck features of the
   training images (of a sample, when the whole pass would take more than a fifth of the budget);
2. **the leader's family gets the rest**: from scratch, one long run of the better flip setting;
   with features, Lite0's whole pass, then Lite1 and Lite2 and their concatenation, compared by
   5-fold cross-validation on the training features, until the leader is within
   :data:`~cnnkit.train.candidates.GOOD_ENOUGH_ERROR` of 100% (nothing could beat it by more); then
   fine-tuning of the leading backbone when the budget still holds enough epochs of it.

Every candidate is scored on images held out of training (the selection split, or cross-validation
folds) and never on the split that is reported: the data's test split, else its validation split.
The chosen model alone is evaluated there, so ``metrics.json`` stays an honest estimate.

``RUN/`` holds the chosen model at its top level (checkpoints, config, metrics, report), so
``evaluate``, ``predict``, ``serve``, ``export`` and the studio use what was chosen;
``RUN/auto.json`` and ``RUN/leaderboard.csv`` hold every candidate (score, time, epochs, why it
stopped); ``RUN/candidates/<name>/`` keeps each other trained candidate's config and history
(and its checkpoints with ``keep_candidates``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.commands.outputs import write_run_outputs
from cnnkit.config import RunConfig, save_json
from cnnkit.data import DataSplits, ImageSet, load_data
from cnnkit.data.arrays import conform_splits
from cnnkit.errors import ConfigError
from cnnkit.io import atomic_write_text
from cnnkit.phases import phase
from cnnkit.run_folder import AUTO as AUTO_JSON
from cnnkit.run_folder import CANDIDATES, CONFIG, HISTORY_CSV, HISTORY_JSON, LEADERBOARD, LOCK
from cnnkit.train import candidates as C
from cnnkit.train.candidates import Candidate
from cnnkit.train.folder import claim_fresh_dir, default_run_dir
from cnnkit.train.run import RunResult
from cnnkit.train.run import train as train_one

LEADERBOARD_COLUMNS = ("rank", "name", "kind", "model", "transfer", "score", "score_kind", "cv", "seconds", "epochs",
                       "stopped", "chosen")
ESTIMATE_SHARE = 0.08  # of the budget for each from-scratch estimate
FEATURE_ESTIMATE_SHARE = 0.2  # a features pass longer than this share of the budget is estimated on a sample
ESTIMATE_EPOCHS = 4
REPORT_RESERVE = 0.04  # of the budget kept for the chosen model's pictures and report (at least 4 s)
SAFETY = 1.25  # predicted costs are met with this margin: a busy machine runs slower than it measured


@dataclass
class Clock:
    """One clock for the whole ``--time`` budget, started before anything else."""

    budget: float
    start: float

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()


@dataclass
class Data:
    """The data as the race uses it: the candidates' splits (train, selection as val, reported as test)."""

    description: Any
    own: DataSplits | None  # at the images' own size and colour: from-scratch candidates
    features: DataSplits | None  # RGB at the backbones' size: feature candidates
    selection: str  # what the selection split is, in words ("" = none: too few images)
    reported: str  # "val" | "test"


def say(text: str) -> None:
    """What was chosen is part of the result, not progress: said even with --quiet (on stderr)."""
    print(f"cnnkit: auto: {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the run


def train_auto(cfg: RunConfig, splits: DataSplits | None = None, callbacks: list | None = None,
               explicit_out: bool = False, keep_candidates: bool = False) -> RunResult:
    """Race the candidates within ``cfg.train.time`` (default :data:`~cnnkit.train.candidates.DEFAULT_TIME`)
    seconds and return the chosen model's :class:`RunResult`, its run folder written in full."""
    clock = Clock(float(cfg.train.time or C.DEFAULT_TIME), time.perf_counter())
    _refuse_distributed()
    lock = claim_fresh_dir(default_run_dir(cfg, explicit_out), explicit_out)
    try:
        race = Race(cfg, clock, lock.folder, callbacks, keep_candidates)
        return race.run(splits)
    finally:
        lock.release()


def _refuse_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise ConfigError("the automatic default races candidates in one process: name a model (--model NAME) "
                          "to train under torchrun")


class Race:
    """The candidates, their scores and the chosen one, for one run folder."""

    def __init__(self, cfg: RunConfig, clock: Clock, run_dir: Path, callbacks: list | None, keep: bool):
        self.user, self.clock, self.run_dir = cfg, clock, Path(run_dir)
        self.callbacks, self.keep = callbacks, keep
        self.board: list[Candidate] = []
        self.notes: list[str] = []
        self.rates: dict[str, float] = {}  # measured seconds per image: "scratch", each backbone's pass
        self.features: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # backbone -> (train, selection) features
        self.seed = cfg.train.seed
        self._runners: dict = {}  # ONNX Runtime sessions by backbone and input shape, kept for every pass
        self.amp = None  # features are computed in full precision, as training computes them (the cache key)
        # seconds a train() call spends outside its epochs (building, weights, final evaluation):
        # a first guess, then the largest measured
        self.overhead = 3.0
        self.report_cost = max(4.0, REPORT_RESERVE * clock.budget)
        self.setup_cost = 0.0  # building a backbone and exporting it: measured on Lite0

    # ------------------------------------------------------------------ phases of the race

    def run(self, splits: DataSplits | None) -> RunResult:
        data = self._data(splits)
        self.data = data
        d = data.description
        say(f"{_text(d)}: racing candidates for {self.clock.budget:.0f} s (--time sets the budget, --model NAME "
            f"skips the race)")
        if data.own is not None:
            self._scratch_estimates()
        if data.features is not None:
            self._lite0_estimate()
        leader = self._leader()
        if leader is None:  # no estimate fitted its share (a slow or busy machine): one candidate with what is left
            leader = self._fallback()
        if leader is not None and leader.kind == "scratch":
            self._scratch_long(leader)
        elif leader is not None:
            self._features_race()
            self._finetune()
        chosen = self._select()
        result = self._conclude(chosen)
        return result

    def _data(self, splits: DataSplits | None) -> Data:
        """Describe (no pixels decoded), then decode once for each family that can run."""
        from cnnkit.data.describe import describe

        description = describe(self.user.data, splits)  # classes, counts, colour, size: no pixels decoded
        user = self.user
        channels_given = C.is_given(user, "data.channels")
        augment_given = any(k.startswith("augment.") for k in getattr(user, "given", ()))
        features_ok = not (channels_given and user.data.channels == 1) and not augment_given
        if augment_given:
            self._note("augmentation was given: frozen features cannot be augmented, so no feature candidates")
        size = tuple(user.data.image_size) if C.is_given(user, "data.image_size") else tuple(description.size)
        scratch_ok = max(size) <= C.SCRATCH_MAX_SIDE
        if not scratch_ok:
            self._note(f"images of {size[0]}x{size[1]} px: from scratch is too slow on them, not tried")
        grey = description.grey if not channels_given else user.data.channels == 1
        own = features = None
        with phase("preparing data"):
            if scratch_ok:
                data = dataclasses.replace(user.data, image_size=size, channels=1 if grey else 3)
                loaded = conform_splits(splits, size, data.channels) if splits is not None else load_data(data)
                own, sel_name, reported = C.selection_split(loaded, user.data.seed)
            if features_ok:
                side = tuple(user.data.image_size) if C.is_given(user, "data.image_size") else (C.FEATURE_SIDE,) * 2
                if own is not None:  # small images: upscaled in memory, the same split
                    features = conform_splits(own, side, 3)
                else:
                    data = dataclasses.replace(user.data, image_size=side, channels=3)
                    loaded = conform_splits(splits, side, 3) if splits is not None else load_data(data)
                    features, sel_name, reported = C.selection_split(loaded, user.data.seed)
        self.grey, self.size = grey, size
        if own is None and features is None:
            raise ConfigError("the automatic default has no candidate for this data and these settings: name a "
                              "model with --model")
        if not sel_name:
            raise ConfigError(f"{user.data.source}: too few training images to hold any out for choosing a model; "
                              f"name a model with --model")
        return Data(description, own, features, sel_name, reported)

    # ------------------------------------------------------------------ from scratch

    def _scratch_estimates(self) -> None:
        """Both flip settings, a few epochs each on at most a sample: the cheap estimate of this family."""
        own = self.data.own
        k = len(own.train.classes)
        name = C.scratch_model(self.grey, self.size)
        channels = own.train.channels
        try:
            rate = C.scratch_seconds_per_image(name, own.train.image_size, channels, k, device=_device(self.user))
        except Exception as exc:  # noqa: BLE001 - a net that cannot take these images is simply no candidate
            self._note(f"{name} cannot train on these images ({exc})")
            return
        self.rates["scratch"] = rate
        n = len(own.train)
        share = ESTIMATE_SHARE * self.clock.budget
        m = min(n, int(share / (ESTIMATE_EPOCHS * rate)))
        if m < min(n, 20 * k):
            self._note(f"{name} from scratch: {rate * 1000:.1f} ms per image, too slow to estimate in "
                              f"{share:.0f} s")
            return
        if 2 * (share * 1.25 + self.overhead) > self.clock.left() - self.report_cost:
            self._note(f"{name} from scratch: no time to estimate it ({self.clock.left():.0f} s left)")
            return
        sample = C.subsample(own.train, m, self.seed)
        splits = DataSplits(sample, own.val, own.test, own.skipped, own.label_map)
        for flips in (True, False):
            cfg = C.scratch_config(self.user, self.grey, own.train.image_size, channels, flips, ESTIMATE_EPOCHS, m)
            cand = Candidate(f"{name}, {'flips' if flips else 'no flips'}, short", "scratch", cfg, estimate=True,
                             extra={"flips": flips, "images": m})
            self._train(cand, splits, allowance=share * 1.25)

    def _scratch_long(self, leader: Candidate) -> None:
        """The better flip setting on every training image, for as many epochs as the budget holds."""
        own = self.data.own
        rate = self.rates["scratch"]
        epoch = self._measured_epoch(leader, len(own.train)) or rate * len(own.train)
        left = self.clock.left() - self._reserve() - self.overhead
        epochs = min(C.scratch_epochs_wanted(len(own.train)), int(0.95 * left / epoch))
        flips = leader.extra.get("flips", True)
        name = f"{leader.cfg.model.name}, {'flips' if flips else 'no flips'}"
        cfg = C.scratch_config(self.user, self.grey, own.train.image_size, own.train.channels, flips, max(1, epochs),
                               len(own.train))
        if cfg.train.epochs <= leader.epochs and len(own.train) <= leader.extra.get("images", 0):
            why = 'the epochs were named' if C.is_given(self.user, 'train.epochs') else f'{left:.0f} s left'
            self._note(f"{name}: the estimate already ran every image for {leader.epochs} epochs; no longer run "
                       f"({why})")
            return
        self._train(Candidate(name, "scratch", cfg, extra={"flips": flips, "images": len(own.train)}), own,
                    allowance=left + self.overhead)

    def _fallback(self) -> Candidate | None:
        """The cheapest candidate, trained with whatever time is left: the from-scratch net where it can run,
        else Lite0's features of as many training images as the time holds."""
        self._note("no estimate fitted its share of the budget: training the cheapest candidate with the time left")
        own, feats = self.data.own, self.data.features
        if own is not None:
            flips = not self.data.description.digits
            cfg = C.scratch_config(self.user, self.grey, own.train.image_size, own.train.channels, flips,
                                   C.scratch_epochs_wanted(len(own.train)), len(own.train))
            name = f"{cfg.model.name}, {'flips' if flips else 'no flips'}"
            self._train(Candidate(name, "scratch", cfg, extra={"flips": flips, "images": len(own.train)}), own,
                        allowance=self.clock.left() - self.report_cost)
            return self._best("scratch")
        backbone = C.BACKBONES[0]
        model, inputs = self._backbone(backbone)
        rate = self.rates.get(backbone) or self._probe_rate(backbone, model, inputs)
        k = len(feats.train.classes)
        room = 0.5 * (self.clock.left() - self.report_cost) / max(rate, 1e-6) - len(feats.val) - _n(feats.test)
        sample = max(2 * k, int(room))
        return self._features_candidate(backbone, model, inputs, sample=sample if sample < len(feats.train) else None)

    # ------------------------------------------------------------------ features

    def _lite0_estimate(self) -> None:
        """Lite0's features: of every training image when the pass fits a fifth of the budget, else of a sample."""
        feats = self.data.features
        backbone = C.BACKBONES[0]
        t0 = time.perf_counter()
        model, inputs = self._backbone(backbone)
        rate = self._probe_rate(backbone, model, inputs)
        # building it, loading its weights, exporting it to ONNX Runtime: paid again for each backbone
        self.setup_cost = time.perf_counter() - t0 - rate * min(len(feats.train), 64)
        self.overhead = max(self.overhead, self.setup_cost)  # a training call builds its model too
        n = len(feats.train) + len(feats.val)
        share = FEATURE_ESTIMATE_SHARE * self.clock.budget
        if n * rate <= share:
            self._features_candidate(backbone, model, inputs)
            return
        m = int(share / rate) - len(feats.val)
        k = len(feats.train.classes)
        if m < 10 * k:
            self._note(f"{backbone} features: {rate * 1000:.0f} ms per image, too slow to estimate in "
                              f"{share:.0f} s")
            return
        self._features_candidate(backbone, model, inputs, sample=m)

    def _features_race(self) -> None:
        """Every backbone's whole pass while it fits, cross-validated, then their concatenation."""
        for backbone in C.BACKBONES:
            done = next((c for c in self.board if c.kind == "features" and c.extra.get("backbone") == backbone
                         and not c.estimate), None)
            if done is not None:
                continue
            best = self._best("features", "concat")
            if best is not None and self._good_enough(best):
                self._note(f"stopped the race: {best.name} is already at {best.cv:.1%} cross-validated and "
                           f"{best.score:.1%} on the {self.data.selection}; no candidate could beat it by more "
                           f"than {1 - min(best.cv, best.score):.1%}, and frozen heads differ by tenths there")
                break
            feats = self.data.features
            sampled = self._sample_of(backbone)  # a sample's features are not computed again
            images = len(feats.train) + len(feats.val) - (len(sampled.extra["sample_index"]) if sampled else 0)
            cost = self._pass_estimate(backbone, images) + self.setup_cost
            # its pass, then the reported split's pass of whichever head may be chosen after it (the
            # concatenation's takes every backbone's)
            after = max(self._reserve(backbone), self._lead_reserve(), self._reserve("+".join(
                [c.extra["backbone"] for c in self.board if c.kind == "features" and c.score is not None
                 and not c.estimate] + [backbone])))
            if SAFETY * cost > self.clock.left() - after:
                self.board.append(Candidate(f"{_short(backbone)} features", "features",
                                            stopped=f"not run: its feature pass would take about {cost:.0f} s, "
                                                    f"{self.clock.left():.0f} s left",
                                            extra={"backbone": backbone, "model": backbone}))
                continue
            self._features_candidate(backbone, *self._backbone(backbone))
        done = [c.extra["backbone"] for c in self.board
                if c.kind == "features" and not c.estimate and c.score is not None]
        if len(done) >= 2:
            self._concat_candidate(done)

    def _features_candidate(self, backbone: str, model: Any, inputs: Any, sample: int | None = None) -> Candidate:
        """The backbone's cached features of the training and selection images; a logistic head's
        cross-validated accuracy (all training features) and selection accuracy (fitted on the rest)."""
        from cnnkit.train.features import cached_features, features_cache_dir

        feats = self.data.features
        index = None if sample is None else C.subsample_index(feats.train, sample, self.seed)
        train = feats.train if index is None else feats.train.subset(index)
        t0 = time.perf_counter()
        cache = features_cache_dir(self.user.data.cache_dir)
        device = model.parameters().__next__().device
        if index is None:  # the whole pass: a sample scored earlier is not passed again
            self._complete_from_sample(backbone, model, inputs, device, cache)
        f_train, info_t = cached_features(model, train, inputs, device, self.amp, cache, self._runners)
        f_sel, info_s = cached_features(model, feats.val, inputs, device, self.amp, cache, self._runners)
        passed = info_t["pass_seconds"] + info_s["pass_seconds"]
        images = (0 if info_t["reused"] else len(train)) + (0 if info_s["reused"] else len(feats.val))
        if images and passed > 0:
            self.rates[backbone] = passed / images
        name = f"{_short(backbone)} features" + (f", {len(train):,}-image sample" if sample else "")
        cand = Candidate(name, "features", C.features_config(self.user, backbone), estimate=sample is not None,
                         extra={"backbone": backbone, "images": len(train), "train_set": train})
        if index is not None:
            cand.extra.update(sample_index=index, sample_features=f_train)
        if sample is None:
            self.features[backbone] = (f_train, f_sel)
        self._score_features(cand, f_train, train.labels, f_sel, feats.val.labels)
        cand.seconds = time.perf_counter() - t0
        self.board.append(cand)
        self._announce(cand)
        return cand

    def _sample_of(self, backbone: str) -> Candidate | None:
        return next((c for c in self.board if c.estimate and c.extra.get("backbone") == backbone
                     and "sample_index" in c.extra), None)

    def _complete_from_sample(self, backbone: str, model: Any, inputs: Any, device: Any, cache: Path) -> None:
        """The training images' features from the sample's and a pass over the others only, stored under
        the whole set's key (the cache then answers the whole pass)."""
        from cnnkit.train.features import cached_features, store_features

        estimate = self._sample_of(backbone)
        if estimate is None:
            return
        train, index = self.data.features.train, estimate.extra["sample_index"]
        rest = np.setdiff1d(np.arange(len(train)), index)
        f_rest, _ = cached_features(model, train.subset(rest), inputs, device, self.amp, cache, self._runners)
        f_sample = estimate.extra["sample_features"]
        full = np.empty((len(train), f_sample.shape[1]), np.float32)
        full[index], full[rest] = f_sample, f_rest
        store_features(model, train, self.amp, cache, [full])

    def _clearly_ahead(self, a: Candidate, b: Candidate) -> bool:
        """``a`` beats ``b`` on the selection split by more than two standard errors of the difference."""
        n = max(1, len(self.data.features.val))
        noise = 2 * ((a.score * (1 - a.score) + b.score * (1 - b.score)) / n) ** 0.5
        return a.score - b.score > max(noise, 1.0 / n)

    def _good_enough(self, cand: Candidate) -> bool:
        """Within :data:`~cnnkit.train.candidates.GOOD_ENOUGH_ERROR` of 100% both cross-validated and on
        the selection split (allowing one standard error of its few images): when the selection images
        differ from the training ones, cross-validation alone is too hopeful."""
        if cand.cv is None or cand.score is None:
            return False
        n = max(1, len(self.data.features.val))
        err = 1 - cand.score
        return (round(1 - cand.cv, 6) <= C.GOOD_ENOUGH_ERROR
                and err - (err * (1 - err) / n) ** 0.5 <= C.GOOD_ENOUGH_ERROR)

    def _concat_candidate(self, backbones: list[str]) -> None:
        t0 = time.perf_counter()
        feats = self.data.features
        f_train = np.concatenate([self.features[b][0] for b in backbones], axis=1)
        f_sel = np.concatenate([self.features[b][1] for b in backbones], axis=1)
        name = "+".join(backbones)
        cand = Candidate(" + ".join(_short(b) for b in backbones) + " features", "concat",
                         C.features_config(self.user, name), extra={"backbone": name})
        self._score_features(cand, f_train, feats.train.labels, f_sel, feats.val.labels)
        cand.seconds = time.perf_counter() - t0
        self.board.append(cand)
        self._announce(cand)

    def _score_features(self, cand: Candidate, f_train: np.ndarray, y_train: np.ndarray, f_sel: np.ndarray,
                        y_sel: np.ndarray) -> None:
        k = len(self.data.features.train.classes)
        with phase(f"cross-validation ({cand.name})"):
            everything = np.concatenate([f_train, f_sel])
            cand.cv = C.cv_accuracy(everything, np.concatenate([y_train, y_sel]), k, seed=self.seed)
            cand.score = C.selection_accuracy(f_train, y_train, f_sel, y_sel, k)
        cand.score_kind = "selection split"
        cand.stopped = "scored on a sample (estimate)" if cand.estimate else "scored"

    def _finetune(self) -> None:
        """The top blocks of the leading single backbone, when enough epochs of it fit."""
        lead = self._best("features")
        if lead is None or lead.estimate:
            return
        backbone = lead.extra["backbone"]
        feats = self.data.features
        rate = self.rates.get(backbone)
        if rate is None:
            return
        if self._good_enough(lead):
            self._note(f"no fine-tuning: {lead.name} is already at {lead.cv:.1%} (cross-validated)")
            return
        # an epoch: forward and backward through the top blocks (about two passes) over the training
        # images, one pass over the selection images; then one pass over the reported split
        epoch = rate * (2 * len(feats.train) + len(feats.val))
        # what is left once the features head (if fine-tuning loses) and its own reported pass are paid for
        left = self.clock.left() - self._reserve(backbone) - self.overhead - rate * _n(feats.test)
        epochs = min(C.MAX_FINETUNE_EPOCHS, int(0.9 * left / epoch)) if epoch > 0 else 0
        if epochs < C.MIN_FINETUNE_EPOCHS:
            self._note(f"no fine-tuning: {max(0, epochs)} epochs of it fit ({epoch:.0f} s each, {left:.0f} s "
                              f"left), fewer than {C.MIN_FINETUNE_EPOCHS}")
            return
        cfg = C.finetune_config(C.features_config(self.user, backbone), self.user, epochs)
        cand = Candidate(f"{_short(backbone)} fine-tuned", "finetune", cfg, extra={"backbone": backbone})
        self._train(cand, feats, allowance=left + rate * _n(feats.test))

    # ------------------------------------------------------------------ training one candidate

    def _train(self, cand: Candidate, splits: DataSplits, allowance: float) -> None:
        """Train ``cand`` in ``RUN/candidates/<name>`` within ``allowance`` seconds (and the race's clock);
        its score is the best epoch's accuracy on the selection split (its validation split)."""
        allowance = max(1.0, min(allowance, self.clock.left() - self.report_cost))
        folder = self.run_dir / CANDIDATES / _slug(cand.name)
        cfg = dataclasses.replace(cand.cfg, train=dataclasses.replace(
            cand.cfg.train, time=round(allowance, 1), out=str(folder), report=False))
        cand.cfg = cfg
        say(f"trying {cand.name} ({cfg.train.epochs} epoch{'s' * (cfg.train.epochs != 1)}, up to {allowance:.0f} s)")
        t0 = time.perf_counter()
        with phase(f"candidate {cand.name}"):
            result = train_one(cfg, splits=splits, callbacks=self.callbacks, explicit_out=True)
        cand.seconds = time.perf_counter() - t0
        cand.result, cand.run_dir = result, result.run_dir
        cand.epochs = len(result.history)
        accs = [row.get("val_acc") for row in result.history if row.get("val_acc") is not None]
        cand.score = max(accs) if accs else None
        cand.score_kind = "selection split"
        cand.stopped = result.stop_reason or f"ran its {cfg.train.epochs} epochs"
        epochs_time = sum(row.get("time", 0.0) or 0.0 for row in result.history)
        self.overhead = max(self.overhead, cand.seconds - epochs_time)
        if result.diverged:
            cand.score, cand.stopped = None, f"diverged: {result.stop_reason}"
        self.board.append(cand)
        self._announce(cand)

    def _measured_epoch(self, cand: Candidate, n_train: int) -> float | None:
        """Seconds per epoch on ``n_train`` images, scaled from the candidate's measured epochs."""
        times = [row.get("time") for row in (cand.result.history if cand.result else []) if row.get("time")]
        images = cand.extra.get("images") or n_train
        return max(times) * n_train / images if times else None

    # ------------------------------------------------------------------ costs

    def _backbone(self, backbone: str):
        from cnnkit.inference.preprocess import ImageInputs
        from cnnkit.models import build_model
        from cnnkit.runtime import select_device

        feats = self.data.features
        cfg = C.features_config(self.user, backbone)
        model_cfg = dataclasses.replace(cfg.model, num_classes=len(feats.train.classes), in_channels=3,
                                        image_size=feats.train.image_size)
        device = select_device(self.user.train.device)
        model = build_model(model_cfg).to(device).eval()
        inputs = ImageInputs(*model.input_norm, device, False)
        return model, inputs

    def _probe_rate(self, backbone: str, model: Any, inputs: Any) -> float:
        """Seconds per image of ``backbone``'s feature pass, timed on one batch of the real images
        (through the engine the pass will use: its ONNX session is kept for the pass)."""
        from cnnkit.train.features import EXTRACT_BATCH, _compute

        feats = self.data.features
        batch = feats.train.subset(np.arange(min(len(feats.train), EXTRACT_BATCH)))
        device = next(model.parameters()).device
        engine = "onnxruntime" if len(feats.train) + len(feats.val) >= 256 else "torch"
        _compute(model, batch.subset(np.arange(min(4, len(batch)))), inputs, device, self.amp, 4, engine, self._runners)
        t0 = time.perf_counter()
        _compute(model, batch, inputs, device, self.amp, EXTRACT_BATCH, engine, self._runners)
        self.rates[backbone] = (time.perf_counter() - t0) / len(batch)
        return self.rates[backbone]

    def _pass_estimate(self, backbone: str, images: int) -> float:
        """A pass over ``images``: the last measured backbone's rate, scaled by multiply-adds."""
        if backbone in self.rates:
            return self.rates[backbone] * images
        measured = [b for b in self.rates if b in C.BACKBONES]
        if not measured:
            return float("inf")
        ref = measured[-1]
        side = self.data.features.train.image_size
        ratio = _macs(backbone, side) / _macs(ref, side)
        return self.rates[ref] * ratio * images

    def _final_cost(self, backbone: str) -> float:
        """What choosing a feature candidate still costs: the pass over the reported split."""
        n = _n(self.data.features.test)
        if "+" in backbone:
            return sum(self._final_cost(b) for b in backbone.split("+"))
        return self.rates.get(backbone, max(self.rates.get(b, 0.0) for b in C.BACKBONES)) * n if n else 0.0

    def _reserve(self, features: str | None = None) -> float:
        """Seconds kept for the end: the report, and for an untrained feature head (``features``: its
        backbone) the training call and its pass over the reported split."""
        if features is None:
            return self.report_cost
        return self.report_cost + self.overhead + self._final_cost(features)

    def _lead_reserve(self) -> float:
        """The reserve for the feature head leading now, if any (it may still be chosen)."""
        lead = self._best("features", "concat")
        return self._reserve(lead.extra["backbone"] if lead is not None else None)

    # ------------------------------------------------------------------ selection

    def _best(self, *kinds: str) -> Candidate | None:
        """The highest score of these kinds (feature heads by cross-validated accuracy), ties to the cheaper."""
        pool = [c for c in self.board if c.kind in kinds and c.score is not None]
        if not pool:
            return None
        heads = set(kinds) <= {"features", "concat"}
        # ties: a complete measurement over an estimate, then the earlier (cheaper) candidate
        return max(pool, key=lambda c: (c.cv if heads and c.cv is not None else c.score, not c.estimate,
                                        -self.board.index(c)))

    def _leader(self) -> Candidate | None:
        scratch, features = self._best("scratch"), self._best("features")
        if scratch is None or features is None:
            return scratch or features
        return scratch if scratch.score > features.score else features

    def _select(self) -> Candidate:
        """The best feature head (by cross-validation) and the others compete on the selection split."""
        features = self._best("features", "concat")
        while features is not None and not features.estimate and \
                SAFETY * (self.overhead + self._final_cost(features.extra["backbone"])) > \
                self.clock.left() - self.report_cost:  # its reported pass no longer fits: the next best head
            self._note(f"{features.name}: no time left for its pass over the reported split")
            features.stopped = "scored; no time left for its pass over the reported split"
            features = max((c for c in self.board if c.kind in ("features", "concat") and c.score is not None
                            and c.cv is not None and c.cv < features.cv), key=lambda c: c.cv, default=None)
        if features is not None and features.estimate:  # scored on a sample: its whole pass must still fit
            feats = self.data.features
            backbone = features.extra["backbone"]
            cost = self.rates.get(backbone, 0.0) * (len(feats.train) + len(feats.val))
            if SAFETY * cost > self.clock.left() - self._reserve(backbone):
                self._note(f"{features.name}: no time for the whole feature pass (about {cost:.0f} s, "
                                  f"{self.clock.left():.0f} s left): its head trains on the sample it was scored on")
                features.extra["sample_only"] = True
        finetune = self._best("finetune")
        if finetune is not None and features is not None and not self._clearly_ahead(finetune, features):
            # the frozen head trains on the selection images too once chosen; fine-tuning cannot: it must
            # win by more than the selection split's noise to be worth it
            self._note(f"{finetune.name} ({finetune.score:.1%}) is not clearly ahead of {features.name} "
                       f"({features.score:.1%}) on {len(self.data.features.val)} selection images: kept the head")
            finetune = None
        finalists = [c for c in (features, self._best("scratch"), finetune) if c is not None]
        if not finalists:
            raise ConfigError("the automatic default could not train any candidate within "
                              f"{self.clock.budget:.0f} s: give it more --time or name a model with --model")
        chosen = max(finalists, key=lambda c: (c.score, not c.estimate, -self.board.index(c)))
        chosen.chosen = True
        return chosen

    def _why(self, chosen: Candidate) -> str:
        """One line: the chosen candidate's score and what it beat, each family on its own measure."""
        heads = ("features", "concat")
        parts = [f"{chosen.score:.1%} on the {self.data.selection}"]
        if chosen.kind in heads:
            rivals = [c for c in self.board if c is not chosen and c.kind in heads and c.cv is not None]
            best = max(rivals, key=lambda c: c.cv, default=None)
            parts.insert(0, f"{chosen.cv:.1%} cross-validated"
                         + (f" (best feature head; next {best.name} {best.cv:.1%})" if best is not None else ""))
        others = [c for c in self.board if c.kind not in (heads if chosen.kind in heads else (chosen.kind,))
                  and c.score is not None and c is not chosen]
        runner = max(others, key=lambda c: c.score, default=None)
        if runner is not None and runner.score > chosen.score:  # kept over a more costly, not clearly better one
            parts.append(f"kept over {runner.name} ({runner.score:.1%}: not clearly ahead)")
        elif runner is not None:
            parts.append(f"ahead of {runner.name} ({runner.score:.1%})")
        return f"{chosen.name}: " + ", ".join(parts)

    # ------------------------------------------------------------------ the chosen model's run folder

    def _conclude(self, chosen: Candidate) -> RunResult:
        """Train the chosen feature head (seconds on cached features) or take the chosen trained candidate,
        move it to the run folder's top level, evaluate it alone on the reported split, write the records."""
        if chosen.result is None:  # a feature head: scored on cached features, trained now
            say(f"chose {self._why(chosen)}; training its head")
            scored = (chosen.score, chosen.score_kind, chosen.seconds)
            self.board.remove(chosen)  # _train puts it back, trained
            feats = self.data.features
            if chosen.extra.get("sample_only"):  # its cached features: no new pass over the training images
                feats = DataSplits(chosen.extra["train_set"], feats.val, feats.test, feats.skipped, feats.label_map)
            else:  # every training image, the selection split included: its features are cached already
                feats = self._all_training_images(chosen)
            self._train(chosen, feats, allowance=max(self.clock.left(), 5.0 + self.overhead))
            chosen.extra["trained_head_selection_accuracy"] = chosen.score
            chosen.score, chosen.score_kind = scored[0], scored[1]
            chosen.seconds += scored[2]
        else:
            say(f"chose {self._why(chosen)}")
        result = self._promote(chosen)
        result.metrics["split"] = self.data.reported  # the same dict as the evaluation's: the report says it too
        result.metrics["selection"] = self.data.selection
        record = self._record(chosen)
        save_json(record, self.run_dir / AUTO_JSON)
        atomic_write_text(self.run_dir / LEADERBOARD, leaderboard_csv(record["candidates"]))
        with phase("report"):
            cfg = dataclasses.replace(result.config, train=dataclasses.replace(
                result.config.train, report=self.user.train.report))
            write_run_outputs(dataclasses.replace(result, config=cfg))
        self._tidy(chosen)
        record["elapsed_s"] = round(self.clock.elapsed(), 1)
        save_json(record, self.run_dir / AUTO_JSON)
        return result

    def _all_training_images(self, chosen: Candidate) -> DataSplits:
        """The splits the chosen feature head trains on: every training image (the selection split's too,
        it has done its job), no validation split, the reported split as test.  Their features are the
        race's, stored under the joined images' key, so training makes no pass over them."""
        from cnnkit.train.features import features_cache_dir, store_features

        feats = self.data.features
        train, sel = feats.train, feats.val
        paths = train.paths + sel.paths if train.paths is not None and sel.paths is not None else None
        joined = ImageSet(np.concatenate([train.images, sel.images]), np.concatenate([train.labels, sel.labels]),
                          train.classes, paths)
        model, _ = self._backbone(chosen.extra["backbone"])
        parts = [np.concatenate(self.features[b]) for b in chosen.extra["backbone"].split("+")]
        store_features(model, joined, self.amp, features_cache_dir(self.user.data.cache_dir), parts)
        return DataSplits(joined, None, feats.test, feats.skipped, feats.label_map)

    def _promote(self, chosen: Candidate) -> RunResult:
        """The chosen candidate's files become the run folder's top level (each moved atomically)."""
        src = Path(chosen.run_dir)
        for entry in sorted(src.iterdir()):
            if entry.name == LOCK:
                continue
            target = self.run_dir / entry.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            entry.replace(target)
        shutil.rmtree(src, ignore_errors=True)
        result = chosen.result
        return dataclasses.replace(result, run_dir=self.run_dir, metrics=result.metrics if result.metrics else {})

    def _tidy(self, chosen: Candidate) -> None:
        """Candidates not chosen keep their config and history (all their files with ``keep_candidates``)."""
        keep = {CONFIG, HISTORY_CSV, HISTORY_JSON}
        for cand in self.board:
            if cand is chosen or cand.run_dir is None or self.keep:
                continue
            folder = Path(cand.run_dir)
            for entry in folder.iterdir() if folder.is_dir() else ():
                if entry.name not in keep:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        root = self.run_dir / CANDIDATES
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()

    def _record(self, chosen: Candidate) -> dict[str, Any]:
        rows = sorted((c.row() for c in self.board), key=lambda r: (r["score"] is None, -(r["score"] or 0)))
        d = self.data.description
        return {"line": f"cnnkit: auto: chose {self._why(chosen)}", "reason": self._why(chosen),
                "chosen": chosen.name, "budget_s": self.clock.budget, "elapsed_s": round(self.clock.elapsed(), 1),
                "data": {**dataclasses.asdict(d)}, "selection": self.data.selection, "reported": self.data.reported,
                "notes": self.notes, "candidates": rows}

    def _note(self, text: str) -> None:
        """A decision of the race, said as it is made and kept in auto.json."""
        self.notes.append(text)
        say(text)

    def _announce(self, cand: Candidate) -> None:
        score = "no score" if cand.score is None else f"{cand.score:.1%} on the selection split"
        cv = f", {cand.cv:.1%} cross-validated" if cand.cv is not None else ""
        say(f"{cand.name}: {score}{cv} ({cand.seconds:.0f} s; {self.clock.left():.0f} s of the budget left)")


# ----------------------------------------------------------------------------- helpers


def _device(cfg: RunConfig) -> str:
    from cnnkit.runtime import select_device

    return str(select_device(cfg.train.device))


def _text(description: Any) -> str:
    return description.text() if hasattr(description, "text") else description.describe()


def _n(images: Any) -> int:
    return 0 if images is None else len(images)


def _short(backbone: str) -> str:
    return backbone.replace("efficientnet_", "").replace("+", " + ")


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower()


_MACS: dict[tuple[str, tuple[int, int]], int] = {}


def _macs(backbone: str, side: tuple[int, int]) -> int:
    """Multiply-adds of one image through ``backbone``'s features at ``side`` (counted, not timed)."""
    key = (backbone, tuple(side))
    if key not in _MACS:
        import torch
        from torch import nn

        from cnnkit.config import ModelConfig
        from cnnkit.models import build_model

        model = build_model(ModelConfig(name=backbone, transfer="features", pretrained=False, num_classes=2,
                                        in_channels=3, image_size=tuple(side))).eval()
        total = [0]

        def count(m: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            if isinstance(m, nn.Conv2d):  # output positions x (input channels per group x kernel area)
                total[0] += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

        hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            model.features(torch.zeros(1, 3, *side))
        for h in hooks:
            h.remove()
        _MACS[key] = total[0]
    return _MACS[key]


def leaderboard_csv(rows: list[dict[str, Any]]) -> str:
    """leaderboard.csv: one row a candidate, best first."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LEADERBOARD_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rank, row in enumerate(rows, 1):
        writer.writerow({**row, "rank": rank})
    return buf.getvalue()


__all__ = ["AUTO_JSON", "LEADERBOARD", "Race", "leaderboard_csv", "train_auto"]
