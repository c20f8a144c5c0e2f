"""Sans-IO protocol code: the RESP2/RESP3 codec and Redis's glob matching.

Bytes in, frames out; nothing here imports trio or touches a socket (h11's rule), so
the server, the replica links and the tests all drive the same code.
"""
