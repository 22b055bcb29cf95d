"""The cases, one module per group; importing this package registers them in run order."""

from otv_conformance.checks import changes, consent, patients, pvs, reader, robustness, writer

__all__ = ["changes", "consent", "patients", "pvs", "reader", "robustness", "writer"]
