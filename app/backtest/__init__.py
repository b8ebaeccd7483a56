"""Backtest: recorded history through the worker's own pipeline and rules stage, in event time on a
virtual clock, with fresh in-memory state; compare rule sets; capture fixtures; re-publish history.

Pure layers (no Kafka client): times.py (the command line's times), clock.py (virtual clock, where
batches end), causes.py (the events behind a firing), replayer.py (the replay itself), report.py
(summaries, comparisons, report files). Adapters: source.py (reading a range of a topic), run.py and
parallel.py (driving a run in one or several processes), capture.py, republish.py, cli.py.
"""
