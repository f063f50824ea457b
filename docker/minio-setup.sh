#!/bin/sh
# One-shot MinIO setup: private buckets encrypted at rest by default, and the platform's own user,
# limited to those buckets (the root credentials stay with the operator). Safe to re-run.
set -eu

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

for bucket in medtune mlflow; do
  mc mb --ignore-existing "local/$bucket"
  mc encrypt set sse-s3 "local/$bucket"
  mc anonymous set none "local/$bucket"
done

cat > /tmp/medtune-policy.json <<'POLICY'
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::medtune", "arn:aws:s3:::mlflow"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::medtune/*", "arn:aws:s3:::mlflow/*"]
    }
  ]
}
POLICY
mc admin policy create local medtune-rw /tmp/medtune-policy.json
mc admin user add local "$MEDTUNE_S3_ACCESS_KEY_ID" "$MEDTUNE_S3_SECRET_ACCESS_KEY"
if ! mc admin user info local "$MEDTUNE_S3_ACCESS_KEY_ID" | grep -q medtune-rw; then
  mc admin policy attach local medtune-rw --user "$MEDTUNE_S3_ACCESS_KEY_ID"
fi
echo "minio ready: buckets medtune, mlflow; user $MEDTUNE_S3_ACCESS_KEY_ID"
