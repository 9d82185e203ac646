"""Help that teaches: ``bsjax train|sweep --help``, ``bsjax presets``, ``bsjax configs``.

``--help`` lists every config key a run (or sweep) reads with its default and a
one-line meaning, grouped by section; with ``--config=FILE`` it also shows the
values that file sets where they differ. ``presets`` lists the model presets
with their parameter counts and the paper's Table 4 hyper-parameters;
``configs`` lists the config files with the first line of their docstring.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bsjax.console import table

FLAGS_HELP = (
    (
        "--config=FILE.py[:ARG]",
        "the config file (configs/, see `bsjax configs`); ARG goes to get_config",
    ),
    ("--workdir=DIR", "folder of the run (or sweep); resumed if it holds one"),
    ("--config.SECTION.KEY=VALUE", "override one key below (repeat for several)"),
    (
        "--dry-run",
        "print what the config will do (model, batch schedule, buckets, memory, stop, evals) and exit; writes nothing",
    ),
    (
        "--new-run",
        "refuse unless --workdir is new or empty (without it, a folder holding this run resumes it)",
    ),
    ("--debug", "show the full traceback of a failure instead of its one-line reason"),
    (
        "--log=auto|plain|rich",
        "console style: plain lines, or progress bars redrawn in place (auto: rich on a terminal)",
    ),
    ("--help", "this list"),
)

# Paper preset -> (n_heads, n_layers, d_model, d_ff) comes from bsjax.model.PRESETS;
# counts are at the paper's vocabulary and context.
PRESET_VOCAB, PRESET_CTX = 50280, 512


@dataclasses.dataclass(frozen=True)
class Field:
    """One config key: its dotted name, default and one-line meaning."""

    key: str
    default: Any
    help: str

    @property
    def section(self) -> str:
        return self.key.rsplit(".", 1)[0] if "." in self.key else "(top level)"


# --------------------------------------------------------------- config keys
def _walk(config, prefix: str, helps: dict[str, str]) -> Iterator[Field]:
    """The leaves of a ConfigDict as Fields; ``helps`` maps keys below ``prefix`` to meanings."""
    for key in list(config.keys()):
        value = config[key]
        dotted = f"{prefix}.{key}" if prefix else key
        if hasattr(value, "keys") and not isinstance(value, (str, bytes)):
            yield from _walk(value, dotted, helps)
        else:
            yield Field(dotted, value, helps.get(dotted.split(".", 1)[-1], ""))


def run_fields() -> list[Field]:
    """Every key of a run config with its default and meaning (from the typed sections)."""
    from bsjax.config import RunConfig
    from bsjax.sections import iter_fields

    return [Field(key, default, text) for key, default, text in iter_fields(RunConfig)]


def sweep_fields() -> list[Field]:
    """Every key of a sweep config: the ``sweep`` section, then the ``base`` run config."""
    from bsjax.cbs.sweep.spec import SWEEP_KEY_HELP, default_sweep_section

    sweep = list(_walk(default_sweep_section(), "sweep", SWEEP_KEY_HELP))
    base = [Field(f"base.{f.key}", f.default, f.help) for f in run_fields()]
    return sweep + base


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _values_of(config) -> dict[str, Any]:
    return {f.key: f.default for f in _walk(config, "", {})}


def config_help(command: str, config=None, config_name: str = "") -> str:
    """The ``bsjax train|sweep --help`` text; ``config`` adds a column of its values where they differ."""
    fields = run_fields() if command == "train" else sweep_fields()
    given = _values_of(config) if config is not None else {}
    lines = [
        f"bsjax {command} --config=FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...] "
        "[--dry-run] [--new-run] [--debug] [--log=auto|plain|rich]",
        "",
        "Train one run and write its folder (config.json, metrics.jsonl, summary.json, checkpoints/)."
        if command == "train"
        else "Run a critical-batch-size sweep: a reference run sets the target loss, every batch "
        "size trains to it, then the Y(B) fit and report.",
        "",
        "flags",
    ]
    lines += table(["flag", "meaning"], FLAGS_HELP)
    lines.append("")
    what = f"default, then the value of {config_name} where it differs" if config else "default"
    lines.append(f"config keys (--config.KEY=VALUE; {what}), by section")
    sections: dict[str, list[Field]] = {}
    for field in fields:
        sections.setdefault(field.section, []).append(field)
    for section, members in sections.items():
        lines.append("")
        lines.append(f"[{section}]")
        rows = []
        for f in members:
            row = [f.key, _show(f.default)]
            if config is not None:
                value = given.get(f.key, f.default)
                row.append("" if value == f.default else _show(value))
            row.append(f.help or "-")
            rows.append(row)
        header = ["key", "default"] + (["this config"] if config is not None else []) + ["meaning"]
        lines += table(header, rows)[2:] if rows else []
    lines += [
        "",
        'Token counts accept K/M/B suffixes ("2M"). `bsjax presets` lists the model presets, '
        "`bsjax configs` the config files.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------- the CLI's own flags
@dataclasses.dataclass
class OwnFlags:
    """``--help``, ``--dry-run``, ``--new-run``, ``--debug`` and ``--log`` taken out of a
    train/sweep command line."""

    rest: list[str]
    dry_run: bool = False
    new_run: bool = False  # refuse a folder that is not empty
    debug: bool = False  # tracebacks instead of one-line messages
    log: str = "auto"
    exit_code: int | None = None  # set when the command is done (help printed, bad flag)


def split_own_flags(command: str, argv: list[str], out: Callable[[str], None] = print) -> OwnFlags:
    """Take ``--help``, ``--dry-run``, ``--new-run``, ``--debug`` and ``--log=STYLE`` out of
    ``argv``.

    ``--help`` prints :func:`config_help` (with the values of ``--config`` if
    given) and sets ``exit_code`` 0; a bad ``--log`` value prints one message
    and sets 2. ``--log`` also sets the process's console style.
    """
    from bsjax import console as console_lib

    options = OwnFlags(rest=[])
    want_help = False
    for arg in argv:
        if arg in ("--help", "-h", "--helpfull", "--helpshort"):
            want_help = True
        elif arg in ("--dry-run", "--dry_run", "--dryrun"):
            options.dry_run = True
        elif arg in ("--new-run", "--new_run"):
            options.new_run = True
        elif arg == "--debug":
            options.debug = True
        elif arg.startswith("--log="):
            options.log = arg.split("=", 1)[1]
        else:
            options.rest.append(arg)
    if options.log not in console_lib.STYLES:
        out(
            f"bsjax {command}: --log={options.log!r} is not a style; use one of {', '.join(console_lib.STYLES)}"
        )
        options.exit_code = 2
        return options
    console_lib.set_style(options.log)
    if want_help:
        spec = next((a.split("=", 1)[1] for a in options.rest if a.startswith("--config=")), "")
        config = None
        if spec:
            from bsjax.config.files import load_config_file

            try:
                config = load_config_file(spec)
            except Exception as err:  # the help still lists the defaults
                out(f"(could not load --config={spec}: {err}; showing the defaults only)")
        out(config_help(command, config, spec))
        options.exit_code = 0
    return options


# ------------------------------------------------------------------- presets
def presets_text() -> str:
    """The ``bsjax presets`` text: every preset's shape and counts, Tables 1 and 4."""
    from bsjax import model as model_lib
    from bsjax.batching.paper_tables import TABLE1_CHINCHILLA_STEPS as t_chin
    from bsjax.batching.paper_tables import TABLE4

    rows = []
    for name, (n_heads, n_layers, d_model, d_ff) in model_lib.PRESETS.items():
        cfg = model_lib.preset_config(name, vocab_size=PRESET_VOCAB, ctx_len=PRESET_CTX)
        counts = model_lib.count_params(cfg)
        rows.append(
            [
                name,
                n_layers,
                d_model,
                n_heads,
                d_ff,
                f"{counts['non_embedding']:,}",
                f"{counts['total']:,}",
                f"{model_lib.flops_per_token(cfg):.3g}",
                f"{t_chin[name]:,}" if name in t_chin else "-",
            ]
        )
    lines = [
        f"model presets (counts at vocabulary {PRESET_VOCAB}, context {PRESET_CTX}; "
        "--config.model.preset=NAME)",
    ]
    lines += table(
        [
            "preset",
            "layers",
            "d_model",
            "heads",
            "d_ff",
            "non-embedding",
            "total",
            "FLOPs/token",
            "target step",
        ],
        rows,
    )
    lines.append(
        "  target step: Zhang et al. Table 1, the step of the batch-256 reference run whose EWA "
        "eval loss is the target (the paper gives steps, not losses; a sweep measures the loss)"
    )
    lines += [
        "",
        "Zhang et al. Table 4: beta2 / EWA tau of the fastest run per batch size "
        "(beta1 0.95, LR 3.16e-3; --config.batch.beta2_rule=table:151M)",
    ]
    sizes = sorted({B for row in TABLE4.values() for B in row})
    lines += table(
        ["batch"] + list(TABLE4),
        [
            [B]
            + [
                f"{TABLE4[m][B][0]:g} / {TABLE4[m][B][1]:g}" if B in TABLE4[m] else "-"
                for m in TABLE4
            ]
            for B in sizes
        ],
    )
    return "\n".join(lines)


# ------------------------------------------------------------------- configs
def _first_doc_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except SyntaxError as err:
        return f"(does not parse: {err.msg})"
    return (doc or "(no docstring)").strip().splitlines()[0]


def configs_text(folder: str | Path = "configs") -> str:
    """The ``bsjax configs`` text: each config file and the first line of its docstring."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    if not files:
        return (
            f"no config files in {folder}/ (run bsjax from the repository root, or pass the folder)"
        )
    rows = [[str(p), _first_doc_line(p)] for p in files]
    return "\n".join(
        [
            f"config files in {folder}/ (bsjax train|sweep --config=FILE[:ARG]; --help lists the keys)"
        ]
        + table(["file", "what it is"], rows)
    )


def presets_main(argv: Iterable[str]) -> int:
    """``bsjax presets``."""
    if list(argv):
        print("bsjax presets takes no arguments")
        return 2
    print(presets_text())
    return 0


def configs_main(argv: list[str]) -> int:
    """``bsjax configs [FOLDER]``."""
    if len(argv) > 1:
        print("usage: bsjax configs [FOLDER]  (default: configs)")
        return 2
    print(configs_text(argv[0] if argv else "configs"))
    return 0
