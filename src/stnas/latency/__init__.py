"""Latency on a device: lookup tables and the predictor (table), measuring modules and
networks on this machine (measure)."""
