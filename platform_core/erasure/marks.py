"""What erasure leaves on the records that held erased images: the error a job fails with."""

from __future__ import annotations

from platform_core.errors import Conflict


class DataErased(Conflict):
    """A job's images were erased before or while it read them; `type` is the job's error.code."""

    type = "data_erased"


def split_erased(split_id: str, erased: int) -> DataErased:
    return DataErased(
        f"split {split_id} lost {erased} image(s) to an erasure; make a new split to train on what remains",
        param="split_id",
    )
