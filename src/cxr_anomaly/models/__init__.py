"""Anomaly detection models behind one interface (see base.AnomalyModel)."""
