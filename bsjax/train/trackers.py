"""Experiment trackers fed from the one metrics stream: TensorBoard (no TensorFlow) and W&B.

clu's own TensorBoard writer is built on TensorFlow's summary ops, and
``clu.metric_writers`` imports TensorFlow as soon as it is imported, so a GPU
or TPU host without TensorFlow had no TensorBoard. :class:`TensorBoardWriter`
writes the event files itself with the ``tensorboard`` package's protocol
buffers and record writer: scalars that TensorBoard's scalar view (and its
``EventAccumulator``) reads, text, and the run's hyper-parameters for the
HParams view. :class:`WandbWriter` sends the same scalars to Weights & Biases
(``WANDB_MODE=offline`` keeps them in the run folder).

Both have the methods of clu's ``MetricWriter`` (``write_scalars``,
``write_texts``, ``write_hparams``, ``flush``, ``close``), which is all clu's
periodic actions call, without subclassing it: importing
``clu.metric_writers.interface`` runs ``clu.metric_writers/__init__``, which
imports TensorFlow (about 4.5 s a process on 2 cores), and every run imports
this module (for :func:`flat_hparams`), TensorBoard on or off.
:func:`make_writer` combines the ones a run asks for.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _unsupported(kind: str):
    def write(self, step: int, *args, **kwargs) -> None:
        log.debug("%s does not write %s", type(self).__name__, kind)

    write.__doc__ = f"Not recorded by this tracker ({kind})."
    return write


class _WriterBase:
    """What neither tracker records (images, videos, audio, histograms, raw summaries)."""

    write_summaries = _unsupported("raw summaries")
    write_images = _unsupported("images")
    write_videos = _unsupported("videos")
    write_histograms = _unsupported("histograms")

    def write_audios(self, step: int, audios, *, sample_rate: int) -> None:
        """Not recorded by this tracker (audio)."""


# ------------------------------------------------------------------ TensorBoard
def _event_file_name(logdir: str) -> str:
    # TensorBoard finds files by the "tfevents" substring; time and host keep them unique.
    return os.path.join(
        logdir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.bsjax"
    )


def _open_for_append(path: str):
    if "://" in path:  # gs://, s3://: staged locally, the whole object uploaded at each flush
        from bsjax import storage

        return storage.AppendFile(path, binary=True)
    return open(path, "ab")


def _make_dirs(logdir: str) -> None:
    if "://" not in logdir:  # object storage has no folders to make
        Path(logdir).mkdir(parents=True, exist_ok=True)


def _hparam_value(value: Any):
    """A ``google.protobuf.Value`` for the HParams plugin: a number, a bool or a string."""
    from google.protobuf import struct_pb2

    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


class TensorBoardWriter(_WriterBase):
    """Writes TensorBoard event files in ``logdir`` without TensorFlow.

    One file per writer; every record is a ``tensorboard.compat.proto`` Event
    framed by ``tensorboard``'s RecordWriter (length, CRC-32C, payload), which is
    what TensorBoard reads. Scalars are ``simple_value`` summaries, tagged as
    given (``train/loss``).
    """

    def __init__(self, logdir: str | os.PathLike):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.logdir = str(logdir)
        _make_dirs(self.logdir)
        self.path = _event_file_name(self.logdir)
        self._file = _open_for_append(self.path)
        self._records = RecordWriter(self._file)
        self._event_pb2 = event_pb2
        self._write_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def _write_event(self, event) -> None:
        self._records.write(event.SerializeToString())

    def _write_summary(self, step: int, values: list) -> None:
        from tensorboard.compat.proto import summary_pb2

        event = self._event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)
        )
        self._write_event(event)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """One scalar per tag at ``step`` (non-finite values are written as they are)."""
        from tensorboard.compat.proto import summary_pb2

        values = [
            summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in scalars.items()
        ]
        if values:
            self._write_summary(step, values)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        """Text for TensorBoard's text view (markdown)."""
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
        )
        values = [
            summary_pb2.Summary.Value(
                tag=tag,
                metadata=meta,
                tensor=tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_STRING,
                    string_val=[text.encode()],
                    tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                ),
            )
            for tag, text in texts.items()
        ]
        self._write_summary(step, values)

    def write_hparams(
        self, hparams: Mapping[str, Any], metrics: Sequence[str] = ("eval/ewa_eval_loss",)
    ) -> None:
        """The run's hyper-parameters for TensorBoard's HParams view.

        Writes the experiment (every hparam and the metric tags to compare
        runs by) and this run's session start with its values.
        """
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        values = {k: _hparam_value(v) for k, v in hparams.items()}
        experiment = api_pb2.Experiment(
            hparam_infos=[api_pb2.HParamInfo(name=k) for k in values],
            metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in metrics],
        )
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for k, v in values.items():
            start.hparams[k].CopyFrom(v)
        self._write_hparams_summary(
            metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)
        )
        self._write_hparams_summary(
            metadata.SESSION_START_INFO_TAG,
            plugin_data_pb2.HParamsPluginData(session_start_info=start),
        )

    def _write_hparams_summary(self, tag: str, data) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import metadata

        data.version = metadata.PLUGIN_DATA_VERSION
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(
                plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
            )
        )
        self._write_summary(0, [summary_pb2.Summary.Value(tag=tag, metadata=meta)])

    def flush(self) -> None:
        self._records.flush()

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._records.close()
            self._file = None


# ------------------------------------------------------------------- W&B
class WandbWriter(_WriterBase):
    """Scalars and hyper-parameters to a Weights & Biases run (files under ``workdir/wandb``).

    The W&B step is the optimizer step, logged as the ``step`` metric every
    other metric is plotted against, so a resumed run that logs a step again
    adds points instead of being refused for going back in time. ``resume``
    reattaches to the run of the same ``run_id`` (the run folder's name by
    default). Set ``WANDB_MODE=offline`` to keep everything on disk
    (``wandb sync`` uploads it later).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        project: str,
        *,
        run_id: str | None = None,
        entity: str | None = None,
        config: Mapping[str, Any] | None = None,
    ):
        try:
            import wandb
        except ImportError as err:
            raise ImportError(
                "train.wandb_project is set but the wandb package is not installed; "
                "pip install wandb, or set --config.train.wandb_project=''"
            ) from err
        self._wandb = wandb
        workdir = Path(workdir)
        run_id = run_id or _run_id(workdir)
        self.run = wandb.init(
            project=project,
            entity=entity or None,
            id=run_id,
            name=workdir.name,
            dir=str(workdir),
            config=dict(config or {}),
            resume="allow",
            reinit="finish_previous",
        )
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        self.run.log({"step": int(step), **{k: float(v) for k, v in scalars.items()}})

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        self.run.log({"step": int(step), **dict(texts)})

    def write_hparams(self, hparams: Mapping[str, Any], metrics: Sequence[str] = ()) -> None:
        self.run.config.update(dict(hparams), allow_val_change=True)

    def flush(self) -> None:
        """W&B writes in its own process; nothing to flush here."""

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _run_id(workdir: Path) -> str:
    """A stable W&B run id from the run folder (W&B ids allow letters, digits, - and _)."""
    import hashlib

    digest = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in workdir.name)[:48]
    return f"{safe}-{digest}"


# ------------------------------------------------------------------ together
class Writers(_WriterBase):
    """Several writers behind one: every call goes to each, in order."""

    def __init__(self, writers: Sequence[Any]):
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for w in self.writers:
            w.write_scalars(step, scalars)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        for w in self.writers:
            w.write_texts(step, texts)

    def write_hparams(self, hparams: Mapping[str, Any], **kwargs) -> None:
        for w in self.writers:
            w.write_hparams(hparams, **kwargs)

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"optim.lr": 0.003, ...}`` with scalar values (lists as text)."""
    out: dict[str, Any] = {}
    for key in config:
        value = config[key]
        name = f"{prefix}{key}"
        if hasattr(value, "keys"):
            out.update(flat_hparams(value, name + "."))
        elif isinstance(value, (bool, int, float, str)) or value is None:
            out[name] = "" if value is None else value
        else:
            out[name] = str(value)
    return out


def make_writer(
    workdir: str | os.PathLike,
    *,
    tensorboard: bool = True,
    wandb_project: str = "",
    wandb_entity: str = "",
    hparams: Mapping[str, Any] | None = None,
) -> Writers | None:
    """The trackers a run asks for, as one writer (None when it asks for none).

    TensorBoard files go to ``workdir/tensorboard``; W&B files to
    ``workdir/wandb``. ``hparams`` (a flat mapping, see :func:`flat_hparams`)
    goes to both.
    """
    writers: list[Any] = []
    if tensorboard:
        writers.append(TensorBoardWriter(os.path.join(str(workdir), "tensorboard")))
    if wandb_project:
        writers.append(
            WandbWriter(workdir, wandb_project, entity=wandb_entity or None, config=hparams)
        )
    if not writers:
        return None
    combined = Writers(writers)
    if hparams:
        combined.write_hparams(dict(hparams))
    return combined
