"""Alerts: rules over the stored logs (a search with a threshold), their evaluation under
an advisory lock, their state in PostgreSQL, and the notifiers.

rules.py reads the ``[[alert]]`` tables of the configuration; evaluate.py decides (pure);
store.py reads and writes alert_state, alert_history and alert_notifications; notify.py
posts; engine.py runs one evaluation round and is what the scheduler calls.
"""
