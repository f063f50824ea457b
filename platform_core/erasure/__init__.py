"""Erasure on request: images, datasets and a patient's images removed everywhere, with a record."""
