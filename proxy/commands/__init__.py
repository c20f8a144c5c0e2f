"""The command layer: the table (table.py), one module per command family.

Importing this package imports every family, and each registers its commands in the
table with the ``command`` decorator: registration is explicit, and no module imports
its own plugins.
"""

from . import bitmaps, connection, keyspace, lcs, rq, strings, transactions  # noqa: F401
from .table import TABLE, Batch  # noqa: F401
