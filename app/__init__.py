"""Vigil: event-driven infrastructure on Kafka."""

from app.native import install as _install_native

# The pipeline's hot modules run compiled when a fresh build exists (app.native explains when).
_install_native()
