"""``reward_train`` with a head (``RewardTrainConfig.head`` ≠ "none") or a search over options. No Django imports.

A head run computes the frozen CLIP's features of every image and prompt once, fits the head ensemble
(:func:`rewards.quick.fit_head_ensemble`; the temperature on validation when ``calibrate``), measures it and the
zero-shot backbone like :func:`rewards.train.train_reward_model` does (tie threshold chosen on validation, test at
that threshold) and saves a reward model folder whose ``reward_config.json`` carries the head.

A search (``search=True``) tries :func:`search_candidates` (head kinds and settings, plus whole-model and
last-layer CLIP fine-tunes through the ordinary trainer) and records every candidate in the result's
``candidates``. A heads-only search chooses by k-fold cross-validation over prompts (``search_folds``, see
:mod:`rewards.head_cv`) and then (``search_refit``) fits the winner on the training and validation pairs together:
validation has done its job once the folds have ranked the candidates, and its pairs are a tenth more data. The
refitted model's temperature is fitted out-of-bag and its tie threshold on the pooled out-of-fold predictions
(hundreds of pairs, where the validation split alone has a few dozen). A search with CLIP fine-tunes keeps the
best validation accuracy (then log-loss).

Resume: a head fit takes seconds, so it keeps no checkpoint and an interrupted head run (or search) simply
starts again; the CLIP fine-tune of ``head="none"`` keeps the trainer's exact resume.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.jobs import JobCancelled, NullJobContext

from .config import RewardTrainConfig
from .data import PreferencePair, check_training_pairs
from .features import FeatureCache
from .head_cv import CrossValidation, cross_validate_head, prompt_folds
from .heads import HeadConfig
from .metrics import accuracy_gain, choose_threshold, evaluate_predictions, human_ceiling, votes_by_pair
from .quick import PairTable, QuickRewardModel, fit_head_ensemble, pair_table

__all__ = ["Candidate", "head_config_of", "search_candidates", "search_reward_models", "train_head_reward_model"]


def head_config_of(config: RewardTrainConfig) -> HeadConfig:
    """The :class:`HeadConfig` a training config asks for (its ``head_*`` settings)."""
    return HeadConfig(
        kind=config.head,
        hidden=config.head_hidden,
        dropout=config.head_dropout,
        lr=config.head_lr,
        weight_decay=config.head_weight_decay,
        steps=config.head_steps,
        batch_size=config.head_batch_size,
    )


def _device(config: RewardTrainConfig) -> str:
    return "cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu"


def _metrics(p_val: np.ndarray, val: PairTable, p_test: np.ndarray | None, test: PairTable | None) -> dict:
    threshold, _ = choose_threshold(p_val, val.label_a.numpy())
    out = {"val": evaluate_predictions(p_val, val.label_a.numpy(), threshold), "test": None}
    if p_test is not None and test is not None:
        out["test"] = evaluate_predictions(p_test, test.label_a.numpy(), threshold)
    return out


class _Tables:
    """The splits in feature space (features computed once, shared by every candidate)."""

    def __init__(self, config: RewardTrainConfig, train, val, test, features: FeatureCache | None) -> None:
        began = time.perf_counter()
        self.features = features or FeatureCache(
            config.backbone, processor=config.processor, device=_device(config), batch_size=config.eval_batch_size
        )
        self.train = pair_table(self.features, train)
        self.val = pair_table(self.features, val)
        self.test = pair_table(self.features, test) if test else None
        self.test_prompts = [pair.prompt for pair in test]
        self.seconds = time.perf_counter() - began
        scale = self.features.logit_scale
        self.zero_shot_p_test = self.test.zero_shot_p_a(scale) if self.test is not None else None

    def zero_shot(self) -> dict:
        """Zero-shot CLIP's figures, its tie threshold chosen on validation."""
        scale = self.features.logit_scale
        return _metrics(self.val.zero_shot_p_a(scale), self.val, self.zero_shot_p_test, self.test)

    def test_gain(self, model: QuickRewardModel, threshold: float, baseline: dict) -> dict | None:
        """``model``'s tie-aware test accuracy above zero-shot's (``baseline``, :meth:`zero_shot`), with its 95%
        interval over the test prompts."""
        if self.test is None:
            return None
        return accuracy_gain(
            model.predict_table(self.test).p_a,
            threshold,
            self.zero_shot_p_test,
            baseline["val"]["threshold"],
            self.test.label_a.numpy(),
            self.test_prompts,
        )


def _fit(config: RewardTrainConfig, head: HeadConfig, tables: _Tables) -> tuple[QuickRewardModel, dict, dict]:
    ensemble, fit = fit_head_ensemble(
        tables.train,
        head,
        ensemble_size=config.ensemble_size,
        seed=config.seed,
        val=tables.val,
        calibrate=config.calibrate,
    )
    model = QuickRewardModel(ensemble, tables.features, fit)
    p_test = model.predict_table(tables.test).p_a if tables.test is not None else None
    return model, fit, _metrics(model.predict_table(tables.val).p_a, tables.val, p_test, tables.test)


def _refit(
    config: RewardTrainConfig, head: HeadConfig, tables: _Tables, pooled: PairTable, cv: CrossValidation
) -> tuple[QuickRewardModel, dict, dict]:
    """The cross-validated winner fitted on ``pooled`` (training and validation pairs together): its temperature
    out-of-bag (the cross-validation's with a single member), its tie threshold the one chosen on the pooled
    out-of-fold predictions; ``val`` figures are those out-of-fold ones, ``test`` is measured at that threshold."""
    ensemble, fit = fit_head_ensemble(
        pooled, head, ensemble_size=config.ensemble_size, seed=config.seed, calibrate=config.calibrate
    )
    if config.calibrate and fit["calibrated_on"] is None:
        ensemble.temperature.fill_(cv.temperature)
        fit.update(temperature=cv.temperature, calibrated_on="cross_validation")
    model = QuickRewardModel(ensemble, tables.features, fit)
    threshold = cv.metrics["threshold"]
    test = None
    if tables.test is not None:
        test = evaluate_predictions(model.predict_table(tables.test).p_a, tables.test.label_a.numpy(), threshold)
    return model, fit, {"val": dict(cv.metrics), "test": test}


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and np.isfinite(v)}


def _summary(
    config: RewardTrainConfig,
    train: Sequence[PreferencePair],
    val: Sequence[PreferencePair],
    test: Sequence[PreferencePair],
    chosen: dict,
    baseline: dict,
    began: float,
    output_dir: str | None,
    described: dict,
    *,
    steps: int,
    train_seconds: float,
    test_gain: dict | None,
) -> dict[str, Any]:
    """The same keys as :func:`rewards.train.train_reward_model`'s summary."""
    from .train import _clean

    test_metrics = chosen["test"]
    return _clean(
        {
            "val_accuracy": chosen["val"]["accuracy"],
            "test_accuracy": test_metrics["accuracy"] if test_metrics else None,
            "baseline_val_accuracy": baseline["val"]["accuracy"],
            "baseline_test_accuracy": baseline["test"]["accuracy"] if baseline["test"] else None,
            "test_gain": test_gain,
            "threshold": chosen["val"]["threshold"],
            "best_step": steps,
            "val": chosen["val"],
            "test": test_metrics,
            "baseline": {**baseline, "threshold": baseline["val"]["threshold"]},
            "human_ceiling": human_ceiling(votes_by_pair(test)) if test else None,
            "steps": steps,
            "epochs": None,
            "resumed_from_step": 0,
            "train_pairs": len(train),
            "val_pairs": len(val),
            "test_pairs": len(test),
            "seconds": time.perf_counter() - began,
            "train_seconds": train_seconds,
            "pairs_per_second": None,
            "pairs_trained_this_attempt": None,
            "device": _device(config),
            "num_processes": 1,
            "model": described,
            "config": config.to_dict(),
            "model_dir": output_dir,
        }
    )


def _stop_check(callbacks: Any, what: str) -> None:
    if callbacks.should_stop():
        raise JobCancelled(f"reward training stopped before {what} (a head fit restarts on resume)")


def train_head_reward_model(
    config: RewardTrainConfig,
    train: Sequence[PreferencePair],
    val: Sequence[PreferencePair],
    test: Sequence[PreferencePair] = (),
    callbacks: Any = None,
    *,
    output_dir: str | None = None,
    features: FeatureCache | None = None,
) -> dict[str, Any]:
    """Fit ``config.head`` on frozen ``config.backbone`` features; the trainer's summary dict (see the module)."""
    began = time.perf_counter()
    callbacks = callbacks or NullJobContext()
    check_training_pairs(train, "training")
    check_training_pairs(val, "validation")
    _stop_check(callbacks, "the head fit")
    tables = _Tables(config, train, val, test, features)
    callbacks.report_progress(0.2, f"features of {len(tables.features)} images")
    baseline = tables.zero_shot()
    callbacks.log_metrics(0, {f"val_{k}": v for k, v in _finite(baseline["val"]).items()})
    head = head_config_of(config)
    model, fit, metrics = _fit(config, head, tables)
    logged = {f"val_{k}": v for k, v in _finite(metrics["val"]).items()}
    callbacks.log_metrics(head.steps, {**logged, "temperature": fit["temperature"], "fit_seconds": fit["seconds"]})
    described = model.to_reward_model().describe()
    if output_dir:
        model.save(output_dir)
    callbacks.report_progress(1.0, f"done: validation accuracy {metrics['val']['accuracy']:.3f}")
    result = _summary(
        config,
        train,
        val,
        test,
        metrics,
        baseline,
        began,
        output_dir,
        described,
        steps=head.steps,
        train_seconds=fit["seconds"],
        test_gain=tables.test_gain(model, metrics["val"]["threshold"], baseline),
    )
    result.update(head=head.to_dict(), ensemble_size=config.ensemble_size, temperature=fit["temperature"])
    result["feature_seconds"] = tables.seconds
    return result


# -- search ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One option of a search: ``changes`` applied to the run's own config."""

    name: str
    changes: Mapping[str, Any]


def search_candidates(config: RewardTrainConfig) -> list[Candidate]:
    """The grid a search tries: every head kind (``patch_linear`` also with twice the steps and ten times the
    decay) and, unless ``search_grid`` is "heads", two CLIP fine-tunes (whole model and the last layer, with the
    run's own fine-tune settings)."""
    heads = [
        Candidate("linear", {"head": "linear"}),
        Candidate("mlp", {"head": "mlp"}),
        Candidate("patch_linear", {"head": "patch_linear"}),
        Candidate(
            "patch_linear-long",
            {"head": "patch_linear", "head_steps": 2 * config.head_steps, "head_weight_decay": 0.1},
        ),
        Candidate("patch_mlp", {"head": "patch_mlp"}),
        Candidate("patch_set", {"head": "patch_set"}),
        Candidate("attention", {"head": "attention"}),
    ]
    if config.search_grid == "heads":
        return heads
    return [
        *heads,
        Candidate("finetune-whole", {"head": "none", "trainable_layers": None}),
        Candidate("finetune-last1", {"head": "none", "trainable_layers": 1}),
    ]


class _Quiet:
    """Callbacks for a fine-tune candidate: metrics prefixed by the candidate's name, no checkpoints (a search
    restarts on resume), stop requests passed through."""

    def __init__(self, callbacks: Any, prefix: str, progress: tuple[float, float]) -> None:
        self.callbacks, self.prefix, self.progress = callbacks, prefix, progress

    def report_progress(self, fraction: float, message: str = "") -> None:
        start, end = self.progress
        self.callbacks.report_progress(start + (end - start) * fraction, f"{self.prefix}: {message}")

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.callbacks.log_metrics(step, {f"{self.prefix}/{k}": v for k, v in values.items()})

    def should_stop(self) -> bool:
        return self.callbacks.should_stop()

    def save_checkpoint(self, payload: bytes) -> None:
        pass

    def load_checkpoint(self) -> bytes | None:
        return None


def _cross_validation_table(
    config: RewardTrainConfig, candidates: Sequence[Candidate], tables: _Tables, pairs: Sequence[PreferencePair]
) -> tuple[PairTable, list[torch.Tensor]] | None:
    """The pooled training and validation pairs and their prompt folds, when this search chooses by
    cross-validation (``search_folds`` ≥ 2, heads only, at least two prompts); else None."""
    if config.search_folds < 2:
        return None
    if any(dataclasses.replace(config, **c.changes).head == "none" for c in candidates):
        return None
    pooled = pair_table(tables.features, pairs)
    folds = prompt_folds(pooled.prompt, config.search_folds, config.seed)
    return (pooled, folds) if folds else None


def _record(candidate: Candidate, metrics: dict | None, seconds: float, cv: CrossValidation | None) -> dict[str, Any]:
    val, test = (metrics or {}).get("val"), (metrics or {}).get("test")
    record: dict[str, Any] = {
        "name": candidate.name,
        "changes": dict(candidate.changes),
        "val_accuracy": val["accuracy"] if val else None,
        "val_decisive_accuracy": val["decisive_accuracy"] if val else None,
        "val_log_loss": val["log_loss"] if val else None,
        "test_accuracy": test["accuracy"] if test else None,
        "test_decisive_accuracy": test["decisive_accuracy"] if test else None,
        "seconds": seconds,
    }
    if cv is not None:
        record.update(
            cv_accuracy=cv.metrics["accuracy"],
            cv_decisive_accuracy=cv.metrics["decisive_accuracy"],
            cv_log_loss=cv.metrics["log_loss"],
            cv_folds=cv.folds,
        )
    return record


def search_reward_models(
    config: RewardTrainConfig,
    train: Sequence[PreferencePair],
    val: Sequence[PreferencePair],
    test: Sequence[PreferencePair] = (),
    callbacks: Any = None,
    *,
    output_dir: str | None = None,
    candidates: Sequence[Candidate] | None = None,
    features: FeatureCache | None = None,
    evaluate_all: bool = False,
) -> dict[str, Any]:
    """Try every candidate and keep the best: by cross-validation accuracy (then log-loss) over the training and
    validation pairs when ``config.search_folds`` ≥ 2 and every candidate is a head, else by validation accuracy
    (then log-loss). The chosen one's summary plus ``candidates`` (name, settings, figures, seconds),
    ``chosen`` (its name), ``selected_by`` ("cross_validation" or "validation") and ``refit``. Under
    cross-validation only the winner is fitted, unless ``evaluate_all`` (a bench comparing the two ways of choosing:
    every candidate fitted on the training split and measured on validation and test, as its record shows); with
    ``search_refit`` the winner is fitted on the training and validation pairs (``refit``: pairs, temperature, tie
    threshold, test figures) and the summary's validation figures are its out-of-fold ones, else on the training
    split and measured on validation."""
    from .train import RewardTrainer, Splits

    began = time.perf_counter()
    callbacks = callbacks or NullJobContext()
    check_training_pairs(train, "training")
    check_training_pairs(val, "validation")
    candidates = list(candidates or search_candidates(config))
    tables = _Tables(config, train, val, test, features)
    baseline = tables.zero_shot()
    crossed = _cross_validation_table(config, candidates, tables, [*train, *val])
    records: list[dict[str, Any]] = []
    fitted: dict[int, tuple[Any, dict]] = {}
    crossed_of: dict[int, CrossValidation] = {}
    best: tuple[tuple[float, float], int] | None = None
    for index, candidate in enumerate(candidates):
        _stop_check(callbacks, f"candidate {candidate.name}")
        span = (index / len(candidates), (index + 1) / len(candidates))
        settings = dataclasses.replace(config, search=False, **candidate.changes)
        started = time.perf_counter()
        cv = None
        if crossed is not None:
            cv = crossed_of[index] = cross_validate_head(crossed[0], head_config_of(settings), crossed[1], config.seed)
            rank = (cv.metrics["accuracy"], -cv.metrics["log_loss"])
        if settings.head == "none":
            trainer = RewardTrainer(settings, Splits(train, val, test), _Quiet(callbacks, candidate.name, span))
            summary = trainer.train()
            fitted[index] = (trainer.model, {key: summary[key] for key in ("val", "test", "test_gain")})
        elif crossed is None or evaluate_all:
            keep, _, metrics = _fit(settings, head_config_of(settings), tables)
            fitted[index] = (keep, metrics)
        if crossed is None:
            metrics = fitted[index][1]
            rank = (metrics["val"]["accuracy"], -metrics["val"]["log_loss"])
        record = _record(candidate, fitted.get(index, (None, None))[1], time.perf_counter() - started, cv)
        records.append(record)
        key, figure = ("cv_accuracy", record["cv_accuracy"]) if cv else ("val_accuracy", record["val_accuracy"])
        callbacks.log_metrics(index, {f"candidate_{key}": figure})
        how = "cross-validated" if cv else "validation"
        callbacks.report_progress(span[1], f"candidate {candidate.name}: {how} accuracy {figure:.3f}")
        if best is None or rank > best[0]:
            best = (rank, index)
    chosen_index = best[1]
    candidate = candidates[chosen_index]
    settings = dataclasses.replace(config, search=False, **candidate.changes)
    refit = None
    if crossed is not None and config.search_refit:
        started = time.perf_counter()
        _stop_check(callbacks, f"fitting {candidate.name} on the training and validation pairs")
        model, fit, metrics = _refit(settings, head_config_of(settings), tables, crossed[0], crossed_of[chosen_index])
        refit = {
            "pairs": len(crossed[0]),
            "temperature": fit["temperature"],
            "calibrated_on": fit["calibrated_on"],
            "threshold": metrics["val"]["threshold"],
            "test_accuracy": metrics["test"]["accuracy"] if metrics["test"] else None,
            "test_decisive_accuracy": metrics["test"]["decisive_accuracy"] if metrics["test"] else None,
            "seconds": time.perf_counter() - started,
        }
        if chosen_index not in fitted:  # the record shows the fit the search measured: this one
            records[chosen_index] = _record(
                candidate, metrics, records[chosen_index]["seconds"] + refit["seconds"], crossed_of[chosen_index]
            )
        fitted[chosen_index] = (model, metrics)
    elif chosen_index not in fitted:
        started = time.perf_counter()
        keep, _, metrics = _fit(settings, head_config_of(settings), tables)
        fitted[chosen_index] = (keep, metrics)
        seconds = records[chosen_index]["seconds"] + time.perf_counter() - started
        records[chosen_index] = _record(candidate, metrics, seconds, crossed_of[chosen_index])
    model, metrics = fitted[chosen_index]
    test_gain = metrics.get("test_gain")
    if isinstance(model, QuickRewardModel):
        test_gain = tables.test_gain(model, metrics["val"]["threshold"], baseline)
        model = model.to_reward_model()
    model.to("cpu")
    described = model.describe()
    if output_dir:
        model.save(output_dir)
    result = _summary(
        settings,
        train,
        val,
        test,
        metrics,
        baseline,
        began,
        output_dir,
        described,
        steps=0,
        train_seconds=sum(r["seconds"] for r in records),
        test_gain=test_gain,
    )
    result.update(
        chosen=candidate.name,
        candidates=records,
        config=config.to_dict(),
        selected_by="validation" if crossed is None else "cross_validation",
        refit=refit,
    )
    if refit is not None:
        result.update(train_pairs=refit["pairs"], fitted_on="train+validation")
    return result
