"""`client.erasures`: erase a patient's images by the original PatientID (matched by HMAC on the
server, never stored or echoed). `client.datasets.delete` and `.delete_image` erase the rest."""

from __future__ import annotations

from medtune.models import Erasure
from medtune.resources._base import AsyncResource, SyncResource


class Erasures(SyncResource):
    def create(self, patient_id: str) -> Erasure:
        """Every image of the patient in this key's project, everywhere; zero removed when none is left."""
        return self._client.post("/v1/erasures", Erasure, json={"patient_id": patient_id}, idempotent=True)


class AsyncErasures(AsyncResource):
    async def create(self, patient_id: str) -> Erasure:
        return await self._client.post(
            "/v1/erasures", Erasure, json={"patient_id": patient_id}, idempotent=True
        )
