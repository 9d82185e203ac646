"""Save, kill, resume: the resumed run ends bitwise equal to an uninterrupted one."""

import train_helpers as th

from bsjax.train.loop import train


def test_resume_is_bitwise_equal_to_uninterrupted(tmp_path, text_corpus, data_caches):
    full = train(th.config(text_corpus, data_caches), tmp_path / "full")
    assert full["status"] == "max_steps" and full["steps"] == 12

    part = tmp_path / "part"
    first = train(th.config(text_corpus, data_caches, train__max_steps=6), part)
    assert first["steps"] == 6
    last_eval = th.metric_lines(part, "eval")[-1]  # step 6 is off the eval grid (every 4)
    assert last_eval["step"] == 6 and first["final_ewa_eval_loss"] == last_eval["ewa_eval_loss"]
    resumed = train(th.config(text_corpus, data_caches), part)
    assert resumed["steps"] == 12
    assert resumed["params_sha256"] == full["params_sha256"]
    starts = [(l["step"], l["start"]) for l in th.metric_lines(part, "resume")]
    assert starts == [(0, "new"), (6, "extend")]


def test_metrics_contract(tmp_path, text_corpus, data_caches):
    summary = train(th.config(text_corpus, data_caches, train__max_steps=4), tmp_path)
    lines = th.metric_lines(tmp_path)
    assert {l["kind"] for l in lines} >= {"train", "eval", "compile", "event", "resume"}
    for line in lines:
        assert {"kind", "step", "examples", "tokens"} <= set(line)
    train_lines = th.metric_lines(tmp_path, "train")
    assert [l["step"] for l in train_lines] == [1, 2, 3, 4]
    assert {"batch_size", "lr", "loss", "step_time_s", "tokens_per_s"} <= set(train_lines[-1])
    assert {"eval_loss", "ewa_eval_loss"} <= set(th.metric_lines(tmp_path, "eval")[0])
    assert summary["tokens"] == 4 * 16 * 32 and summary["examples"] == 64
    assert (tmp_path / "config.json").exists() and (tmp_path / "tensorboard").is_dir()
    assert summary["corpus"]["corpus"]["source"] == "text_folder"


def test_resume_skips_a_checkpoint_that_does_not_restore(
    tmp_path, text_corpus, data_caches, caplog
):
    import shutil

    full = train(th.config(text_corpus, data_caches), tmp_path / "full")
    part = tmp_path / "part"
    train(th.config(text_corpus, data_caches, train__max_steps=8), part)  # saves 4 and 8
    newest = part / "checkpoints" / "8" / "state"
    shutil.rmtree(newest)
    newest.mkdir()  # an empty item: the checkpoint exists but cannot restore
    with caplog.at_level("WARNING"):
        resumed = train(th.config(text_corpus, data_caches), part)
    assert any("checkpoint at step 8 is corrupt" in r.message for r in caplog.records)
    assert (part / "quarantined_checkpoints").is_dir()  # kept for a post-mortem, not deleted
    assert th.metric_lines(part, "resume")[-1]["checkpoint_step"] == 4
    assert resumed["params_sha256"] == full["params_sha256"]


def test_config_json_of_a_run_reruns_exactly_that_run(tmp_path, text_corpus, data_caches):
    import subprocess

    first = train(th.config(text_corpus, data_caches, train__max_steps=4), tmp_path / "first")
    proc = subprocess.run(
        [
            *th.cli_command(tmp_path / "again", text_corpus, data_caches)[:4],
            f"--config={tmp_path / 'first' / 'config.json'}",
            f"--workdir={tmp_path / 'again'}",
        ],
        env=th.cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = th.summary(tmp_path / "again")
    assert again["steps"] == 4 and again["params_sha256"] == first["params_sha256"]
