"""One lock per serving process around every MXNet call of the serving path.

MXNet's Python front end is not thread-safe, and the serving workers run several request threads (gthread).
Concurrent forward passes through one hybridized block raced on its cached graph's memory (answers of one
request returned to another: wrong classes under load) and deadlocked its engine: every request thread of a
worker blocked for ever in NDArray.asnumpy() (seen with py-spy during bench.soak), so the worker stalled
while gunicorn saw it alive. Parsing and encoding need no MXNet and still run in parallel.
"""

import threading

MXNET = threading.Lock()
