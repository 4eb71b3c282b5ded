"""Multi-host gradient sums through MXNet's dist_sync kvstore (ps-lite), the built-in algorithm's transport.

Only this module imports MXNet, and only in multi-host jobs: a single host trains in numpy alone.
Without an optimizer on the servers, a dist_sync server stores the sum of the workers' pushes, so a push
followed by a pull is an allreduce (sum) across hosts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from byoc_runtime import distributed
from byoc_runtime.training_env import TrainingEnv

GRADIENT_KEY = 0


class KVStoreReducer:
    def __init__(self, kv: Any, size: int):
        import mxnet as mx

        self.mx, self.kv = mx, kv
        self.out = mx.nd.zeros((size,))
        kv.init(GRADIENT_KEY, mx.nd.zeros((size,)))

    def allreduce(self, vector: np.ndarray) -> np.ndarray:
        self.kv.push(GRADIENT_KEY, self.mx.nd.array(vector))
        self.kv.pull(GRADIENT_KEY, out=self.out)
        return self.out.asnumpy()

    def close(self) -> None:
        """Free the kvstore now: its destructor is ps-lite's Finalize, a barrier with the scheduler and the
        servers, which must still be running (freed at interpreter exit instead, after they were stopped,
        the worker would wait forever)."""
        import gc

        self.kv = None
        gc.collect()  # a reference cycle could otherwise keep it alive until exit


def reducer_for(env: TrainingEnv, feature_dim: int, num_factors: int) -> KVStoreReducer | None:
    """A reducer over a dist_sync kvstore in a multi-host job (start_parameter_servers first), else None."""
    if len(env.hosts) < 2:
        return None
    import mxnet as mx

    kv = mx.kv.create(distributed.kvstore_type(env, "dist_sync"))
    size = 2 + 2 * feature_dim + feature_dim * num_factors
    return KVStoreReducer(kv, size)
