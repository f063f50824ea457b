#!/bin/sh
# Installs the Debian packages the platform runs on: Tesseract (and its English data) for the
# burned-in text screen. Idempotent: does nothing where tesseract is already on PATH.
command -v tesseract >/dev/null 2>&1 && [ -n "$(ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata 2>/dev/null)" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "medtune needs Tesseract OCR: install tesseract-ocr and tesseract-ocr-eng (Debian/Ubuntu) first" >&2
  exit 1
fi
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  tesseract-ocr tesseract-ocr-eng >/dev/null
