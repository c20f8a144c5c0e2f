"""Benchmark harness: redquorum against a raw redis-server and twemproxy, in one sitting.

Run ``python -m bench.run --help`` (or ``bench/run.sh``); bench/README.md explains the output.
"""
