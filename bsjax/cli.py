"""The ``bsjax`` command (also ``python -m bsjax``).

bsjax train   --config=configs/FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]
bsjax sweep   --config=configs/FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]
bsjax analyze DIR
bsjax fit-cbs FILE.csv [--b-opt N] [--overhead R] [--alpha 1|fit] [--json]
bsjax theory  SUBCOMMAND ...
bsjax report  RUN_DIR [--out DIR]   plots of one run (loss, batch size, LR, noise scale, step time)
bsjax presets                       model presets: sizes, parameter counts, Table 4
bsjax configs [FOLDER]              the config files and what each is

train and sweep take --help (every config key, its default and meaning), --dry-run
(what the config will do; writes nothing), --new-run (refuse a folder that is not
empty), --debug (tracebacks) and --log=auto|plain|rich.
Exit codes: 0 done or preempted, 2 bad input (nothing written), 3 diverged,
4 failed (summary.json says why), 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import sys

USAGE = __doc__


def _maybe_init_distributed() -> None:
    """Join a multi-process run when started as one of several processes.

    Set BSJAX_COORDINATOR (host:port), BSJAX_NUM_PROCESSES and BSJAX_PROCESS_ID,
    or run where ``jax.distributed.initialize()`` detects the cluster by itself
    (TPU pods, SLURM): set BSJAX_DISTRIBUTED=auto there.
    """
    import jax

    if os.environ.get("BSJAX_COORDINATOR"):
        num = int(os.environ["BSJAX_NUM_PROCESSES"])
        # CPU processes need a collectives library (set before any backend starts).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=os.environ["BSJAX_COORDINATOR"],
            num_processes=num,
            process_id=int(os.environ["BSJAX_PROCESS_ID"]),
        )
    elif os.environ.get("BSJAX_DISTRIBUTED") == "auto":
        jax.distributed.initialize()


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name=V`` or ``--name V`` in ``argv`` (None when absent)."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _config_command(name: str, argv: list[str]) -> int:
    """``train`` and ``sweep``: absl flags with an ml_collections config file.

    Exit codes: 0 done (finished, at a limit, at the target, preempted), 2 bad
    input (nothing written), 3 diverged, 4 failed (summary.json says why), 130
    interrupted. ``--debug`` shows tracebacks instead of one-line reasons.
    """
    from absl import app, flags
    from ml_collections import config_flags

    from bsjax import cli_help, errors
    from bsjax.config.files import check_command_line

    options = cli_help.split_own_flags(name, argv)  # --help, --dry-run, --new-run, --debug, --log
    if options.exit_code is not None:
        return options.exit_code
    argv = options.rest
    try:  # what absl would report as a flag-parsing traceback
        check_command_line(argv)
        if not options.dry_run and _flag_value(argv, "workdir") is not None:
            from bsjax.train.lock import check_workdir

            check_workdir(_flag_value(argv, "workdir"))
    except errors.ProblemsError as err:
        print(f"bsjax {name}: {err}", file=sys.stderr)
        return errors.EXIT_BAD_INPUT
    flags_ = flags.FLAGS
    spec = _flag_value(argv, "config") or ""
    if spec.endswith(".json"):  # a run's resolved config.json: reruns exactly that run
        from bsjax.config.files import load_config_file

        argv = [a for a in argv if not a.startswith("--config=")]
        config_flags.DEFINE_config_dict(
            "config", load_config_file(spec), lock_config=True, sys_argv=[name, *argv]
        )
    else:
        config_flags.DEFINE_config_file(
            "config", None, "Config file (configs/FILE.py[:ARG]).", lock_config=True
        )
    flags.DEFINE_string("workdir", None, "Folder of the run (or sweep); resumed if it exists.")
    required = ["workdir"] if not options.dry_run else []
    if not spec.endswith(".json"):
        required.append("config")
    flags.mark_flags_as_required(required)
    result = {}

    def main(_):
        _quiet_library_logs()  # absl installs its own handler inside app.run
        try:
            result["rc"] = _run_config_command(name, flags_.config, flags_.workdir, options)
        except errors.ProblemsError as err:  # bad input: one clear message, no traceback
            if options.debug:
                raise
            print(f"bsjax {name}: {err}", file=sys.stderr)
            result["rc"] = errors.EXIT_BAD_INPUT
        except errors.RunFailure as err:  # summary.json holds the status and the reason
            if options.debug:
                raise
            print(f"bsjax {name}: failed: {err}", file=sys.stderr)
            result["rc"] = errors.EXIT_FAILED
            _mute_stderr_at_exit()
        except KeyboardInterrupt:
            print(f"bsjax {name}: interrupted", file=sys.stderr)
            result["rc"] = errors.EXIT_INTERRUPTED
        except Exception as err:
            if options.debug:
                raise
            print(
                f"bsjax {name}: failed: {errors.describe_failure(err)} (--debug shows the "
                "traceback)",
                file=sys.stderr,
            )
            result["rc"] = errors.EXIT_FAILED

    try:
        app.run(main, argv=[f"bsjax {name}"] + argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return int(exit_.code) if isinstance(exit_.code, int) else 1
    return result.get("rc", 0)


def _run_config_command(name: str, config, workdir: str, options) -> int:
    """The body of ``train``/``sweep`` once the flags are parsed; returns the exit code."""
    from bsjax import errors, storage

    if options.dry_run:
        from bsjax.dry_run import dry_run

        return dry_run(name, config)
    storage.configure()  # STORAGE_EMULATOR_HOST and friends, before any backend starts
    _maybe_init_distributed()
    if name == "sweep":
        from bsjax.cbs.sweep import run_sweep

        outcome = run_sweep(config, workdir)
        failed = getattr(outcome, "failed", None)
        if failed:
            print(
                f"bsjax sweep: {len(failed)} run(s) failed (their logs: "
                f"{', '.join(sorted(failed.values()))}); a rerun retries none of them unless "
                "--config.sweep.retry_failed=True",
                file=sys.stderr,
            )
            return errors.EXIT_FAILED
        return errors.EXIT_OK
    import jax

    from bsjax.config import parse
    from bsjax.train.loop import train

    run_config = parse(config, jax.device_count())  # once; below takes the RunConfig
    summary = train(run_config, workdir, new_run=options.new_run)
    status = summary.get("status")
    for line in _end_screen(summary):
        print(line)
    print(f"summary:     {os.path.join(workdir, 'summary.json')}")
    print(f"metrics:     {os.path.join(workdir, 'metrics.jsonl')}")
    if run_config.train.tensorboard:
        print(f"tensorboard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}")
    print(f"report:      bsjax report {workdir}")
    return errors.exit_code_for_status(status)


def _end_screen(summary: dict) -> list[str]:
    """What a finished ``bsjax train`` prints about its run, before the file paths."""
    from bsjax.console import duration, human_count

    def loss(key: str) -> str:
        value = summary.get(key)
        return f"{value:.4f}" if isinstance(value, (int, float)) else "-"

    tokens = summary.get("tokens") or 0
    lines = [
        f"status: {summary.get('status')}  steps: {summary.get('steps')}  tokens: {tokens}",
        f"  wall {duration(summary.get('wall_s') or 0)} (compile "
        f"{duration(summary.get('compile_s') or 0)}), {human_count(tokens)} tokens",
        f"  final eval loss {loss('final_eval_loss')}  EWA {loss('final_ewa_eval_loss')}  "
        f"train loss {loss('final_train_loss')}",
    ]
    if summary.get("target_loss"):
        reached = summary.get("steps_to_target")
        lines.append(
            f"  target {summary['target_loss']:g}: "
            + (f"reached at step {reached}" if reached else "not reached")
        )
    if summary.get("reason"):
        lines.append(f"reason:      {summary['reason']}")
    return lines


class _DropChatter(logging.Filter):
    """Drop INFO lines of libraries (orbax narrates every checkpoint); keep bsjax's own
    and every warning. orbax's errors are dropped too (without
    --debug): each is also raised, and the run reports it once with its reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname
        if record.levelno >= logging.ERROR and _from_orbax(record):
            return "--debug" in sys.argv
        return record.levelno >= logging.WARNING or "site-packages" not in path


def _from_orbax(record: logging.LogRecord) -> bool:
    """Whether orbax logged ``record`` (from its own frames, or absl's on its behalf)."""
    if "/orbax/" in record.pathname or str(record.msg).startswith("[process="):
        return True
    tb = record.exc_info[2] if record.exc_info else None
    while tb is not None:
        if "/orbax/" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _quiet_library_logs() -> None:
    for name in ("absl", ""):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_DropChatter())
    logging.getLogger("absl").addFilter(_DropChatter())
    # A failed async checkpoint write (a full disk) leaves one "Task exception was never
    # retrieved" traceback per array; the run reports the failure once, with its reason.
    if "--debug" not in sys.argv:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        _drop_closed_loop_errors()


def _mute_stderr_at_exit() -> None:
    """After a failure's one message: the storage threads of a failed write may still print
    tracebacks while the interpreter shuts down; send them nowhere (--debug keeps them)."""
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _is_closed_loop_error(kind, value) -> bool:
    return kind is RuntimeError and str(value) == "Event loop is closed"


def _drop_closed_loop_errors() -> None:
    """tensorstore's callbacks of a failed async write can fire after orbax closed their
    event loop; each would print a 'RuntimeError: Event loop is closed' traceback, through
    whichever of Python's three error hooks its thread reaches."""
    import threading

    excepthook, unraisablehook = sys.excepthook, sys.unraisablehook
    thread_hook = threading.excepthook

    def on_exception(kind, value, traceback):
        if not _is_closed_loop_error(kind, value):
            excepthook(kind, value, traceback)

    def on_unraisable(unraisable):
        if not _is_closed_loop_error(unraisable.exc_type, unraisable.exc_value):
            unraisablehook(unraisable)

    def on_thread_exception(args):
        if not _is_closed_loop_error(args.exc_type, args.exc_value):
            thread_hook(args)

    sys.excepthook, sys.unraisablehook = on_exception, on_unraisable
    threading.excepthook = on_thread_exception


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``bsjax SUBCOMMAND ...``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _quiet_library_logs()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if command in ("train", "sweep"):
        return _config_command(command, rest)
    if command == "analyze":
        from bsjax.cbs.cli import analyze_main

        return analyze_main(rest)
    if command == "fit-cbs":
        from bsjax.cbs.cli import fit_cbs_main

        return fit_cbs_main(rest)
    if command == "theory":
        from bsjax.theory.cli import main as theory_main

        return theory_main(rest)
    if command == "report":
        from bsjax.cbs.run_report import report_main

        return report_main(rest)
    if command == "presets":
        from bsjax.cli_help import presets_main

        return presets_main(rest)
    if command == "configs":
        from bsjax.cli_help import configs_main

        return configs_main(rest)
    print(f"bsjax: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2
