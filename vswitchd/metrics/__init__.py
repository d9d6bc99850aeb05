"""Prometheus metrics: `/metrics` on the configured address (`metrics: {address: ...}`).

    collector.py  the switch's state read at scrape time (port counters from the per-CPU maps,
                  flow counters, FDB sizes, datapath and stream-loss counters): nothing is
                  counted per packet for the metrics, so forwarding does not pay for them
    api.py        the API's requests by method and code, and their latency (an interceptor)
    server.py     the HTTP listener and its registry

Loaded only when configured: prometheus_client stays out of a daemon that does not serve it.
"""
