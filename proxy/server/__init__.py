"""The I/O edge: the reactor (one task, an epoll set of its own), replica links,
client connections, the listener and the application object that ties them together."""
