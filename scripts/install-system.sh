#!/bin/sh
# Installs the Debian packages the platform runs on: Tesseract (and its English data) for the
# burned-in text screen; Orthanc, its DICOMweb plugin and dcmtk for the PACS tests (a real PACS and
# the modality tools storescu, echoscu, findscu). Idempotent: installs only what is missing, and runs
# `apt-get update` only when it installs something.
missing=""
command -v tesseract >/dev/null 2>&1 && [ -n "$(ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata 2>/dev/null)" ] \
  || missing="$missing tesseract-ocr tesseract-ocr-eng"
# `install-system.sh runtime` (make up): what the platform itself runs on, no PACS server of its own.
if [ "${1:-all}" != runtime ]; then
  command -v Orthanc >/dev/null 2>&1 || missing="$missing orthanc"
  [ -n "$(ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so /usr/lib/orthanc/libOrthancDicomWeb.so* 2>/dev/null)" ] \
    || missing="$missing orthanc-dicomweb"
  command -v storescu >/dev/null 2>&1 || missing="$missing dcmtk"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "medtune needs these Debian/Ubuntu packages: install$missing first" >&2
  exit 1
fi
# shellcheck disable=SC2086  # $missing is a list of package names
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
