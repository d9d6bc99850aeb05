"""Packet tracing: frames built from flow fields, run through the real datapath."""
