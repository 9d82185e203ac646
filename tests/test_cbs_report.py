"""Sweep results, the report writer and `bsjax analyze` on synthetic run folders.

The run folders follow the contract of docs/architecture.md ("A run's folder"): config.json,
metrics.jsonl and summary.json, written here from known Y(B) curves (no training).
"""

import contextlib
import csv
import json
import math
import warnings

import numpy as np
import pytest
from matplotlib import image as mpimg

from bsjax.cbs.cli import analyze_main
from bsjax.cbs.fits import critical_batch_size
from bsjax.cbs.report import write_report
from bsjax.cbs.results import SweepError, SweepWarning, load_sweep
from bsjax.train.eval_schedule import eval_steps, expected_steps_for

CORPUS = {"name": "embedded", "python": "3.11.9", "files": 812, "sha256": "5e1f00d"}
CTX = 64
BATCH = [64, 128, 256, 512, 1024, 2048, 4096]
MODELS = {
    "s1": (1_000_000, 1300.0, 2.8e6, 3.4),
    "s2": (2_000_000, 1750.0, 5.7e6, 3.2),
    "s4": (4_000_000, 2100.0, 1.14e7, 3.0),
}


def write_run(
    root,
    name,
    *,
    preset,
    params,
    batch,
    lr,
    target,
    true_steps,
    status=None,
    stop_at=None,
    summary_has_stt=True,
    seed=0,
):
    """A run folder whose EWA eval loss first reaches ``target`` just after ``true_steps``."""
    run = root / name
    run.mkdir(parents=True)
    config = {
        "seed": seed,
        "model": {"preset": preset, "ctx_len": CTX},
        "optim": {
            "lr": lr,
            "b2": 0.99 if batch <= 512 else 0.95,
            "ewa_tau": 0.999,
            "warmup_tokens": 20_000,
        },
        "batch": {"batch_size": batch},
        "train": {"target_loss": target},
        "target": {"ref_tokens": 20 * params},
        "corpus": CORPUS,
    }
    (run / "config.json").write_text(json.dumps(config))
    n = expected_steps_for(batch, 256, 12_000)
    cap = stop_at or int(max(4 * n, 3 * (true_steps or 0)))
    lines, hit, step = [], None, 0
    # The trainer also evaluates the final state when it stops at its step cap.
    for step in sorted(set(eval_steps(n, max_steps=cap)) | {cap}):
        if true_steps:
            loss = target - 0.4 + 0.4 * (true_steps / step) ** 0.6
        else:
            loss = target + 0.3 + (1.0 / step) ** 0.3
        loss = min(loss, 10.0)
        common = {"step": step, "examples": step * batch, "tokens": step * batch * CTX}
        lines.append(
            {"kind": "train", **common, "batch_size": batch, "lr": lr, "loss": loss + 0.05}
        )
        lines.append({"kind": "eval", **common, "eval_loss": loss + 0.02, "ewa_eval_loss": loss})
        if loss <= target:
            hit = step
            break
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    summary = {
        "status": status or ("target_reached" if hit else "max_steps"),
        "steps": step,
        "examples": step * batch,
        "tokens": step * batch * CTX,
        "batch_size": batch,
        "steps_to_target": hit if summary_has_stt else None,
        "tokens_to_target": hit * batch * CTX if hit and summary_has_stt else None,
        "target_loss": target,
        "model_params": params,
        "ctx_len": CTX,
        "final_eval_loss": lines[-1]["eval_loss"],
        "final_ewa_eval_loss": lines[-1]["ewa_eval_loss"],
        "wall_s": 3.5,
        "corpus": CORPUS,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return hit


def write_sweep_json(root, bootstrap=30):
    """The sweep.json `bsjax sweep` writes, with the parts `bsjax analyze` reads."""
    root.mkdir(parents=True, exist_ok=True)
    analysis = {"b_opt": 0.0, "overhead": 0.2, "alpha": "1", "bootstrap": bootstrap, "seed": 0}
    data = {"settings": [{"label": "", "ref_batch_size": 256}], "runs": [], "analysis": analysis}
    (root / "sweep.json").write_text(json.dumps(data))


def make_sweep(root, models=MODELS, seed=0):
    write_sweep_json(root)
    rng = np.random.default_rng(seed)
    for preset, (params, a, b, target) in models.items():
        for batch in BATCH:
            for lr, slower in ((3e-3, 1.0), (1e-3, 1.25)):
                true_steps = (a + b / batch) * slower * math.exp(rng.normal(0, 0.02))
                write_run(
                    root,
                    f"{preset}_b{batch}_lr{lr:g}",
                    preset=preset,
                    params=params,
                    batch=batch,
                    lr=lr,
                    target=target,
                    true_steps=true_steps,
                )
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = make_sweep(tmp_path_factory.mktemp("sweep"))
    write_run(
        root,
        "s1_b8192_unlucky",
        preset="s1",
        params=1_000_000,
        batch=8192,
        lr=1e-2,
        target=3.4,
        true_steps=None,
        stop_at=300,
    )
    write_run(
        root,
        "s2_b8192_diverged",
        preset="s2",
        params=2_000_000,
        batch=8192,
        lr=1e-2,
        target=3.2,
        true_steps=None,
        stop_at=40,
        status="diverged",
    )
    (root / "not_a_run").mkdir()  # no summary.json: ignored
    return root


def test_load_sweep_picks_best_runs_and_names_the_excluded(sweep):
    with pytest.warns(SweepWarning) as record:
        results = load_sweep(sweep)
    messages = " ".join(str(w.message) for w in record)
    assert "s1_b8192_unlucky" in messages and "censored: stopped at its step cap" in messages
    assert "s2_b8192_diverged" in messages and "diverged" in messages
    assert len(results.runs) == 3 * len(BATCH) * 2 + 2
    assert [c.model for c in results.curves] == ["s1", "s2", "s4"]
    for curve in results.curves:
        assert curve.batch_sizes() == BATCH
        assert all(run.lr == 3e-3 for run in curve.best.values())  # the faster run wins
    assert {r.name for r, _ in results.excluded} == {"s1_b8192_unlucky", "s2_b8192_diverged"}
    assert results.corpus_identities() == [CORPUS]


def test_steps_to_target_recomputed_from_metrics(tmp_path):
    hit = write_run(
        tmp_path,
        "r",
        preset="s1",
        params=1,
        batch=256,
        lr=1e-3,
        target=3.0,
        true_steps=4321,
        summary_has_stt=False,
    )
    (run,) = load_sweep(tmp_path).runs
    # Interpolated between the first eval at the target (the trainer's rule) and the one before.
    assert run.steps_to_target_source == "interpolated"
    assert run.first_eval_steps_to_target == hit == run.bracket_after_step
    assert run.bracket_before_step < run.steps_to_target <= hit
    assert run.steps_to_target == pytest.approx(4321, rel=0.002)  # the curve crosses at 4321
    assert run.bracket_before_loss > 3.0 >= run.bracket_after_loss


def test_report_files_numbers_and_plots(sweep):
    path = write_report(sweep, bootstrap=30, seed=0)
    out = sweep / "report"
    assert path == out / "report.md"
    for name in (
        "results.csv",
        "fits.json",
        "steps_vs_batch.png",
        "ewa_eval_loss.png",
        "steps_examples.png",
        "scaling_N.png",
        "scaling_D.png",
    ):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        pixels = mpimg.imread(png)
        assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 300
        assert pixels[..., :3].std() > 0.05  # not a blank canvas

    fits = json.loads((out / "fits.json").read_text())
    for curve in fits["curves"]:
        _, a, b, _ = MODELS[curve["model"]]
        measured = curve["steps_curve"]["critical_batch_size"]
        assert measured == pytest.approx(critical_batch_size(a, b), rel=0.15)
        ci = curve["steps_curve"]["ci"]["critical_batch_size"]
        assert ci["low"] <= measured <= ci["high"]
    assert fits["scaling"]["N"]["n_points"] == 3
    assert len(fits["scaling"]["N"]["forecasts"]) == 3

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * len(BATCH) * 2 + 2
    best = {r["run"] for r in rows if r["best"] == "True"}
    assert best == {f"{m}_b{b}_lr0.003" for m in MODELS for b in BATCH}
    unlucky = next(r for r in rows if r["run"] == "s1_b8192_unlucky")
    assert unlucky["steps_to_target"] == "" and unlucky["censored"] == "True"
    assert "censored: stopped at its step cap after 300 steps" in unlucky["excluded_reason"]
    assert unlucky["last_eval_step"] == "300" and float(unlucky["last_eval_loss"]) > 3.4
    hit = next(r for r in rows if r["run"] == "s1_b64_lr0.003")
    assert (
        int(hit["bracket_before_step"])
        < float(hit["steps_to_target"])
        <= int(hit["steps_to_target_first_eval"])
    )

    text = path.read_text()
    s1 = fits["curves"][0]["steps_curve"]
    assert f"{s1['log2_critical_batch_size']:.2f}" in text
    assert "B\\* = " in text and "× N^" in text  # the scaling law line
    assert "s1_b8192_unlucky" in text and "s2_b8192_diverged" in text
    assert "Censored runs" in text and "> 300 (censored)" in text
    assert fits["curves"][0]["steps_curve"]["censored"] == [[8192.0, 300.0]]
    assert CORPUS["sha256"] in text
    for name in ("s1_b64_lr0.001", "s4_b4096_lr0.003"):
        assert f"`{name}`" in text  # every run appears in the appendix
    assert "Keys that differ between runs" in text and "`optim.lr`" in text
    for fig in ("steps_vs_batch.png", "ewa_eval_loss.png", "steps_examples.png", "scaling_N.png"):
        assert f"]({fig})" in text


def test_no_run_at_target_is_a_clear_message(tmp_path, capsys):
    write_sweep_json(tmp_path)
    for batch in (256, 512, 1024):
        write_run(
            tmp_path,
            f"b{batch}",
            preset="s1",
            params=1_000_000,
            batch=batch,
            lr=1e-3,
            target=3.0,
            true_steps=None,
            stop_at=200,
        )
    assert analyze_main([str(tmp_path), "--bootstrap", "0"]) == 0
    captured = capsys.readouterr()
    assert "B*: not measured" in captured.out
    assert "b256" in captured.err and "censored" in captured.err
    text = (tmp_path / "report" / "report.md").read_text()
    assert "No critical batch size could be measured" in text
    assert "No run reached its target loss" in text


def test_too_few_batch_sizes_is_reported_not_raised(tmp_path):
    for batch in (256, 512):
        write_run(
            tmp_path,
            f"b{batch}",
            preset="s1",
            params=1_000_000,
            batch=batch,
            lr=1e-3,
            target=3.0,
            true_steps=2000 + 3e6 / batch,
        )
    text = write_report(tmp_path, bootstrap=0).read_text()
    assert "need at least 3 distinct batch sizes" in text


def test_analyze_main_prints_report_path_and_bstar(sweep, capsys):
    assert analyze_main([str(sweep), "--bootstrap", "10"]) == 0
    out = capsys.readouterr().out
    assert f"report: {sweep / 'report' / 'report.md'}" in out
    assert out.count("B* (") == 3 and "scaling law: B* = " in out


def test_analyze_uses_the_sweeps_options_and_flags_override_them(sweep, capsys):
    assert analyze_main([str(sweep)]) == 0
    fits = json.loads((sweep / "report" / "fits.json").read_text())
    assert fits["options"] == {
        "b_opt": 256.0,
        "overhead": 0.2,
        "alpha": 1.0,
        "bootstrap": 30,
        "seed": 0,
        "ci_level": 0.95,
        "interval": "parametric",
    }
    assert analyze_main([str(sweep), "--b-opt", "128", "--bootstrap", "0"]) == 0
    fits = json.loads((sweep / "report" / "fits.json").read_text())
    assert fits["options"]["b_opt"] == 128.0 and fits["options"]["bootstrap"] == 0
    capsys.readouterr()


def test_seeds_are_averaged_and_all_count_as_best(tmp_path):
    write_sweep_json(tmp_path)
    for batch in (256, 512, 1024, 2048):
        for seed, factor in ((0, 1.1), (1, 1 / 1.1)):
            write_run(
                tmp_path,
                f"b{batch}_s{seed}",
                preset="s1",
                params=1_000_000,
                batch=batch,
                lr=1e-3,
                target=3.0,
                true_steps=(1300 + 2.8e6 / batch) * factor,
                seed=seed,
            )
    with _no_warning():
        results = load_sweep(tmp_path)
    (curve,) = results.curves
    assert curve.n_seeds() == [2, 2, 2, 2]
    assert curve.steps() == pytest.approx([1300 + 2.8e6 / b for b in curve.batch_sizes()], rel=2e-3)
    assert all(results.is_best(r) for r in results.runs)
    text = write_report(tmp_path, bootstrap=50).read_text()
    assert "| 256 | `b256_s" in text and "| 2 |" in text  # two seeds behind the point


def test_analyze_main_refuses_a_folder_that_holds_no_sweep(tmp_path, capsys):
    assert analyze_main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    write_run(
        tmp_path, "b256", preset="s1", params=1, batch=256, lr=1e-3, target=3.0, true_steps=900
    )
    assert analyze_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no sweep: there is no sweep.json" in err
    assert not (tmp_path / "report").exists()  # nothing written
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match="no runs"):
        load_sweep(tmp_path / "empty")


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SweepWarning)
        yield
