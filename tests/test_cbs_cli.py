"""`bsjax fit-cbs` through fit_cbs_main."""

import json

import numpy as np
import pytest

from bsjax.cbs.cli import fit_cbs_main

BATCH = 2 ** np.arange(6, 15)


def write_csv(path, rows, header="batch_size,steps"):
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return path


@pytest.fixture
def table6_85m(tmp_path):
    # Zhang et al. Table 6 (a), 85M: a = 1293.83, b = 2834258.08, log2 B* = 9.54.
    return write_csv(tmp_path / "y.csv", [(b, 1293.83 + 2834258.08 / b) for b in BATCH])


def test_json_output_is_one_object(table6_85m, capsys):
    assert fit_cbs_main([str(table6_85m), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # exactly one JSON document
    assert data["a"] == pytest.approx(1293.83, rel=1e-6)
    assert data["b"] == pytest.approx(2834258.08, rel=1e-6)
    assert data["alpha"] == 1.0 and data["b_opt"] == 256
    assert round(data["log2_critical_batch_size"], 2) == 9.54


def test_options_change_the_answer(table6_85m, capsys):
    assert fit_cbs_main([str(table6_85m), "--json", "--b-opt", "128", "--overhead", "0.1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["b_opt"] == 128 and data["overhead"] == 0.1
    assert data["critical_batch_size"] == pytest.approx(
        1.1 * 128 + 0.1 * 2834258.08 / 1293.83, rel=1e-6
    )


def test_fitted_alpha_and_bootstrap(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [
        (b, (1500 + 1e7 / b**1.15) * np.exp(rng.normal(0, 0.02))) for b in BATCH for _ in range(2)
    ]
    path = write_csv(tmp_path / "y.csv", rows)
    assert fit_cbs_main([str(path), "--alpha", "fit", "--bootstrap", "40", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["alpha_fitted"] and data["alpha"] == pytest.approx(1.15, abs=0.1)
    assert (
        data["ci"]["critical_batch_size"]["low"]
        < data["critical_batch_size"]
        < data["ci"]["critical_batch_size"]["high"]
    )


def test_text_output_names_every_number(table6_85m, capsys):
    assert fit_cbs_main([str(table6_85m)]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    for key in ("a", "b", "alpha", "b_opt", "critical_batch_size", "log2_critical_batch_size"):
        assert key in lines
    assert float(lines["log2_critical_batch_size"]) == pytest.approx(9.5417, abs=1e-4)


def test_missing_file(tmp_path, capsys):
    assert fit_cbs_main([str(tmp_path / "none.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_columns(tmp_path, capsys):
    path = write_csv(tmp_path / "y.csv", [(256, 1000), (512, 600), (1024, 400)], header="bs,steps")
    assert fit_cbs_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) batch_size" in err and "found: bs,steps" in err


def test_too_few_rows(tmp_path, capsys):
    path = write_csv(tmp_path / "y.csv", [(256, 1000), (512, 600)])
    assert fit_cbs_main([str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "at least 3 distinct batch sizes" in captured.err


def test_non_numeric_cell(tmp_path, capsys):
    path = write_csv(tmp_path / "y.csv", [(256, 1000), (512, "fast"), (1024, 400)])
    assert fit_cbs_main([str(path)]) == 2
    assert "line 3" in capsys.readouterr().err


def test_bad_option_value(table6_85m, capsys):
    assert fit_cbs_main([str(table6_85m), "--alpha", "two"]) == 2
    assert "'fit'" in capsys.readouterr().err


def test_non_monotone_warns_on_stderr_and_still_prints_json(tmp_path, capsys):
    rows = [(b, 1300 + 2.8e6 / b) for b in BATCH]
    rows[-1] = (rows[-1][0], rows[3][1] * 2)
    path = write_csv(tmp_path / "y.csv", rows)
    assert fit_cbs_main([str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["warnings"]
    assert "warning:" in captured.err and "B=16384" in captured.err
