"""A Jepsen-style fault harness: real replicas and proxies (``cluster``), a seeded fault
schedule (``nemesis``), client workloads that record every operation (``workloads``), and
the checks run on those records once the faults are healed (``checker``). ``runner`` ties
one run together; ``python -m tests.nemesis`` runs long ones and writes a markdown table.
"""
