"""The device mesh and the shardings of batches and scalars."""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(data: int, fsdp: int) -> Mesh:
    """A (data, fsdp) mesh over all devices; ``data=-1`` takes what fsdp leaves."""
    n = jax.device_count()
    if data == -1:
        if n % fsdp:
            raise ValueError(f"mesh.fsdp={fsdp} must divide the device count {n}")
        data = n // fsdp
    if data * fsdp != n:
        raise ValueError(
            f"mesh.data * mesh.fsdp = {data} * {fsdp} must equal the device count {n}"
            f" (set mesh.data=-1 to fill it)"
        )
    return jax.make_mesh((data, fsdp), ("data", "fsdp"), axis_types=(AxisType.Auto, AxisType.Auto))


def data_shards(mesh: Mesh) -> int:
    """How many ways the batch dimension is split: data x fsdp."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a [K, M, L+1] batch: micro-batch rows across every device."""
    return NamedSharding(mesh, P(None, BATCH_AXES, None))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
