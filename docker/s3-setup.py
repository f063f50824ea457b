"""One-shot S3 setup for the compose stack: the platform's and MLflow's buckets, made private and
idempotently (a re-run finds them there). Runs from the API image against MEDTUNE_S3_ENDPOINT_URL with
the platform's own credentials, so it works the same on SeaweedFS, MinIO or any S3 server."""

from __future__ import annotations

import sys
import time

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError

from platform_core.config import get_settings

BUCKETS = ("medtune", "mlflow")


def main() -> None:
    settings = get_settings()
    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
    )
    # The server's healthcheck may pass a moment before it takes credentials: retry for a minute.
    deadline = time.monotonic() + 60
    while True:
        try:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            break
        except (ClientError, EndpointConnectionError) as exc:
            if time.monotonic() > deadline:
                sys.exit(f"s3-setup: the S3 server at {settings.s3_endpoint_url} refused: {exc}")
            time.sleep(2)
    for bucket in BUCKETS:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
    sys.stdout.write(f"s3 ready: buckets {', '.join(BUCKETS)} at {settings.s3_endpoint_url}\n")


if __name__ == "__main__":
    main()
