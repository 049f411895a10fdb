"""``make bench``: the benchmarks of mobius-cache (``python -m benchmarks [--quick] [--only NAME ...]``).

Each module measures one thing and returns a plain dict; ``report`` turns the dicts into docs/benchmarks.md and
the plots in docs/img/. Everything runs against real redis-server processes on loopback ports.
"""
