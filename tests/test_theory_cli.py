"""`bsjax theory ...` through bsjax.theory.cli.main: JSON on stdout, plots, clear errors."""

import json
import subprocess
import sys

import pytest

from bsjax.theory.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cbs_exponent_prints_measured_predicted_and_fit_points(capsys, tmp_path):
    code, out, err = run(
        capsys,
        "cbs-exponent",
        "--a",
        "3",
        "--b",
        "4",
        "--data-sizes",
        "256,1024,4096",
        "--json",
        "--plot-dir",
        str(tmp_path),
    )
    assert code == 0, err
    assert out.count("\n") == 1  # --json: one line
    res = json.loads(out)
    assert res["predicted_exponent"] == pytest.approx(0.25)
    assert abs(res["measured_exponent"] - 0.25) < 0.05
    assert res["comparison"] == "exponent" and res["plateau"] is None
    assert res["regime"] == "a < b < 2a+1: B* ~ D^(1 - a/b)"
    assert res["predicted_behaviour"] == "B* ~ D^0.250"
    assert res["verdict"].startswith("exponent: measured ")
    assert len(res["fit_points"]) == len(res["points"]) == 3
    assert (tmp_path / "cbs_exponent.png").stat().st_size > 10_000


def test_cbs_exponent_b_le_a_reports_batch_one(capsys):
    code, out, _ = run(
        capsys, "cbs-exponent", "--a", "3", "--b", "2", "--data-sizes", "256,1024", "--dim", "256"
    )
    res = json.loads(out)
    assert code == 0 and res["critical_batch_size"] == 1 and res["predicted_exponent"] == 0.0
    assert max(res["risk_optimal_batches"]) <= 2
    assert res["comparison"] == "plateau" and res["measured_exponent"] is None


def test_cbs_exponent_plateau_regime_prints_regime_prediction_and_verdict(capsys):
    code, out, err = run(
        capsys,
        "cbs-exponent",
        "--a",
        "1.6",
        "--b",
        "1.4",
        "--data-sizes",
        "256,1024,4096",
        "--dim",
        "2048",
        "--json",
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["regime"] == "b <= a: bias-dominated, B* = O(1)"
    assert res["predicted_behaviour"].startswith("B* does not grow with D (exponent 0: a plateau")
    assert res["verdict"].startswith("plateau: ")
    assert res["verdict"].startswith("plateau: consistent") == res["plateau"]["consistent"]
    assert res["measured_exponent"] is None and res["abs_error"] is None
    bstar = [p["critical_batch_size"] for p in res["points"]]
    assert res["plateau"]["ratio"] == pytest.approx(max(bstar) / min(bstar))
    drift = res["plateau"]["slope_finite_size_drift"]
    assert f"slope (finite-size drift) {drift:+.3f}" in res["verdict"]


def test_cbs_exponent_help(capsys):
    code, out, _ = run(capsys, "cbs-exponent", "--help")
    assert code == 0 and "plateau test" in out and "--data-sizes" in out


def test_optimal_schedule_meets_budget_and_writes_plot(capsys, tmp_path):
    code, out, err = run(
        capsys,
        "optimal-schedule",
        "--s",
        "0.3",
        "--beta",
        "2",
        "--data-size",
        "1000001",
        "--batch2",
        "64",
        "--plot-dir",
        str(tmp_path),
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["task_class_predicted"] == res["task_class_measured"] == "hard"
    assert res["buckets"]["examples"] == 1000001
    assert sum(s["examples"] for s in res["buckets"]["segments"]) == 1000001
    assert res["continuous"]["loss"] < res["best_constant"]["loss"]
    assert res["two_phase"]["remaining_fraction"] < 0.5
    assert (tmp_path / "optimal_schedule.png").exists()


def test_optimal_schedule_from_linear_regression_exponents(capsys):
    code, out, _ = run(capsys, "optimal-schedule", "--a", "2", "--b", "4", "--data-size", "100000")
    res = json.loads(out)
    assert (
        code == 0
        and res["fsl"]["s"] == pytest.approx(1.5)
        and res["task_class_predicted"] == "easy"
    )


def test_catch_up_and_switch_point(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "catch-up",
        "--s",
        "0.3",
        "--beta",
        "2",
        "--switch-step",
        "100000",
        "--switch-steps",
        "10000,100000",
        "--plot-dir",
        str(tmp_path),
    )
    res = json.loads(out)
    assert code == 0 and res["catch_up_steps"] < 100000
    assert res["predicted_decay_exponent"] == pytest.approx(-0.5)
    assert len(res["scaling"]["runs"]) == 2 and (tmp_path / "catch_up.png").exists()
    code, out, _ = run(
        capsys, "switch-point", "--s", "0.1", "--beta", "2", "--data-sizes", "1e8,1e10,1e12"
    )
    res = json.loads(out)
    assert code == 0 and abs(res["measured_exponent"] - res["predicted_exponent"]) < 0.02


def test_fsl_and_risk_subcommands(capsys):
    code, out, _ = run(
        capsys,
        "fsl",
        "--a",
        "2",
        "--b",
        "3",
        "--dim",
        "500",
        "--steps",
        "2000",
        "--num-records",
        "10",
    )
    res = json.loads(out)
    assert code == 0 and len(res["schedules"]) == 3
    assert all(0.3 < s["ratio_final"] < 2 for s in res["schedules"].values())
    code, out, _ = run(
        capsys,
        "risk",
        "--a",
        "2",
        "--b",
        "3",
        "--lr",
        "0.2",
        "--batch",
        "4",
        "--data-size",
        "4000",
        "--dim",
        "100",
        "--num-records",
        "5",
    )
    res = json.loads(out)
    assert code == 0 and res["steps"] == 1000 and res["examples"] == 4000
    assert res["averaged_risk"][-1] < res["averaged_risk"][0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cbs-exponent", "--a", "1.0", "--b", "3"], "a must be > 1"),
        (
            [
                "risk",
                "--a",
                "2",
                "--b",
                "3",
                "--noise",
                "-1",
                "--lr",
                "0.1",
                "--batch",
                "2",
                "--steps",
                "5",
            ],
            "noise must be >= 0",
        ),
        (
            ["risk", "--a", "2", "--b", "3", "--lr", "0.1", "--batch", "64", "--data-size", "10"],
            "data size D=10) must be >= the batch size B=64",
        ),
        (
            [
                "optimal-schedule",
                "--s",
                "0.3",
                "--beta",
                "2",
                "--a",
                "2",
                "--b",
                "3",
                "--data-size",
                "100",
            ],
            "either --s and --beta",
        ),
        (
            [
                "optimal-schedule",
                "--s",
                "0.3",
                "--beta",
                "2",
                "--data-size",
                "1001",
                "--buckets",
                "4,8",
            ],
            "multiple of their gcd 4",
        ),
    ],
)
def test_bad_parameters_give_one_clear_error(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_theory_core_imports_no_plotting_or_io_library():
    code = (
        "import sys; import bsjax.theory.linreg, bsjax.theory.fsl, bsjax.theory.optimal, "
        "bsjax.theory.cbs_scaling, bsjax.theory.catchup, bsjax.theory.cli; "
        "bad = [m for m in ('matplotlib', 'tensorflow', 'tensorflow_datasets', 'orbax', 'clu') "
        "if m in sys.modules]; print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
