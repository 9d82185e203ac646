"""Two CPU processes (gloo collectives) train like one process with the same devices."""

import socket
import subprocess

import pytest
import train_helpers as th

SWITCH_EXAMPLES = 3 * 16 + 2 * 32 + 2 * 48 + 7 * 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_two(workdir, corpus, caches, arg=None, **extra):
    port = _free_port()
    procs = []
    for pid in range(2):
        env = th.cli_env()
        env.update(
            XLA_FLAGS="--xla_force_host_platform_device_count=4",
            BSJAX_COORDINATOR=f"127.0.0.1:{port}",
            BSJAX_NUM_PROCESSES="2",
            BSJAX_PROCESS_ID=str(pid),
        )
        procs.append(
            subprocess.Popen(
                th.cli_command(workdir, corpus, caches, arg, **extra),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


@pytest.mark.slow
def test_two_processes_read_only_their_rows_and_match_one_process(
    tmp_path, text_corpus, data_caches, switch_reference
):
    single = switch_reference[0]  # the one-process reference: 8 devices in one process

    # Two processes with 4 devices each: the same 8-device mesh.
    multi = tmp_path / "multi"
    procs = _start_two(multi, text_corpus, data_caches, "switch", train__log_example_ids=True)
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]

    # Each process read only the rows of its own devices: disjoint halves that
    # together are every example exactly once, at every step and across switches.
    import json

    per_process = []
    for pid in range(2):
        lines = [
            json.loads(l) for l in (multi / f"example_ids.p{pid}.jsonl").read_text().splitlines()
        ]
        per_process.append({l["step"]: l["ids"] for l in lines})
    assert per_process[0].keys() == per_process[1].keys()
    for step, ids0 in per_process[0].items():
        ids1 = per_process[1][step]
        assert not set(ids0) & set(ids1)
        assert len(ids0) == len(ids1)  # 4 devices each hold the same number of rows
    assert th.consumed_ids(multi) == list(range(SWITCH_EXAMPLES))

    # Rows of a micro-batch are split by device: process 0 holds the first half
    # of every micro-batch's rows (devices 0-3), process 1 the second.
    first_step_ids = per_process[0][0]
    assert first_step_ids == list(range(8))

    single_loss = [l["loss"] for l in th.metric_lines(single, "train")]
    multi_loss = [l["loss"] for l in th.metric_lines(multi, "train")]
    assert len(single_loss) == len(multi_loss) == 14
    assert multi_loss == pytest.approx(single_loss, rel=1e-5, abs=1e-5)
    assert th.summary(multi)["status"] == "max_steps"


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path, text_corpus, data_caches):
    import signal

    from test_train_switch import _wait_for_step

    procs = _start_two(
        tmp_path, text_corpus, data_caches, train__max_steps=100000, train__checkpoint_every=100000
    )
    _wait_for_step(tmp_path, 3, procs[0])
    procs[1].send_signal(signal.SIGTERM)  # only the second process is told
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    summary = th.summary(tmp_path)
    assert summary["status"] == "preempted"
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [summary["steps"]]
