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
(what the config will do; writes nothing) and --log=auto|plain|rich.
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


def _config_command(name: str, argv: list[str]) -> int:
    """``train`` and ``sweep``: absl flags with an ml_collections config file."""
    from absl import app, flags
    from ml_collections import config_flags

    from bsjax import cli_help

    options = cli_help.split_own_flags(name, argv)  # --help, --dry-run, --log
    if options.exit_code is not None:
        return options.exit_code
    argv = options.rest
    flags_ = flags.FLAGS
    config_flags.DEFINE_config_file(
        "config", None, "Config file (configs/FILE.py[:ARG]).", lock_config=True
    )
    flags.DEFINE_string("workdir", None, "Folder of the run (or sweep); resumed if it exists.")
    flags.mark_flags_as_required(["config"] if options.dry_run else ["config", "workdir"])
    result = {}

    def main(_):
        from bsjax.errors import ProblemsError

        _quiet_library_logs()  # absl installs its own handler inside app.run

        config = flags_.config
        try:
            if options.dry_run:
                from bsjax.dry_run import dry_run

                result["rc"] = dry_run(name, config)
                return
            _maybe_init_distributed()
            if name == "train":
                import jax

                from bsjax.config import parse
                from bsjax.train.loop import train

                run_config = parse(config, jax.device_count())  # once; below takes the RunConfig
                summary = train(run_config, flags_.workdir)
                print(
                    f"status: {summary['status']}  steps: {summary['steps']}  "
                    f"tokens: {summary['tokens']}"
                )
                print(f"summary:     {os.path.join(flags_.workdir, 'summary.json')}")
                print(f"metrics:     {os.path.join(flags_.workdir, 'metrics.jsonl')}")
                if run_config.train.tensorboard:
                    print(
                        f"tensorboard: tensorboard --logdir {os.path.join(flags_.workdir, 'tensorboard')}"
                    )
            else:
                from bsjax.cbs.sweep import run_sweep

                run_sweep(config, flags_.workdir)
            result["rc"] = 0
        except ProblemsError as err:  # bad input: one clear message, no traceback
            print(f"bsjax {name}: {err}", file=sys.stderr)
            result["rc"] = 2

    try:
        app.run(main, argv=[f"bsjax {name}"] + argv)
    except (AttributeError, KeyError) as err:  # an override names a key the config lacks
        overrides = [a.split("=", 1)[0] for a in argv if a.startswith("--config.")]
        print(
            f"bsjax {name}: unknown config key {err} in the overrides {overrides}; the keys a "
            f"run reads are listed by bsjax.config.describe_fields (bsjax/config/run.py)",
            file=sys.stderr,
        )
        return 2
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return int(exit_.code) if isinstance(exit_.code, int) else 1
    return result.get("rc", 0)


class _DropChatter(logging.Filter):
    """Drop INFO lines of libraries (orbax narrates every checkpoint); keep bsjax's own
    and clu's progress reports, and every warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname
        return record.levelno >= logging.WARNING or "site-packages" not in path or "/clu/" in path


def _quiet_library_logs() -> None:
    for name in ("absl", ""):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_DropChatter())
    logging.getLogger("absl").addFilter(_DropChatter())


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
