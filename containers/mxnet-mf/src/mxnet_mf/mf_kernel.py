"""The large-data MF loop's arithmetic (fitting._FastMF), compiled with numba and spread over the cores.

Model and objective of the autograd loop's model mf: r_hat = <p_u, q_i> + b_u + b_i + mu, a batch's loss the
mean over its ratings of (r_hat - r)^2 + l2 (|p_u|^2 + b_u^2 + |q_i|^2 + b_i^2) (the per-rating L2), stepped
by Adam with MXNet's lazy update: only the rows a batch touches move (wd added to their gradient), with the
bias-corrected step size; mu takes a dense Adam step. The same arithmetic as the MXNet loop it replaces, so
the same quality (tests compare the two).

Rows: P (users x k+1) holds [p_u, b_u], Q (items x k+1) [q_i, b_i], float32. Batches are a fixed random
partition of the ratings (`make_plan`, once before the first epoch), taken in a new random order each epoch.
In a batch the ratings are grouped by user, and `by_item` lists them grouped by item, so that a step is two
passes, each cut into runs of whole groups of about equal size spread over the threads (numba's prange, no
locks, no atomics):
  A. by user: each rating's error (the rows as they are), the user's gradient, a copy of the user's row as it
     was (`old`), then the user's Adam step;
  B. by item: the item's gradient from its ratings' errors and their users' rows as they were, then its Adam
     step (pass A read the items' rows before any moved).
Pass A walks P in order and Q (the smaller matrix) at random; B walks Q in order and reads the copies of the
batch's users' rows, a smaller working set than P. Without numba (a host without it) the same step runs as
numpy array operations (`NumpySteps`), several times slower.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

try:  # the training image has numba; the serve-only image never imports this module
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8


@dataclass
class Plan:
    """The batches: ratings grouped by user within each batch (u, i, r), and per batch the positions of its
    ratings grouped by item (by_item, absolute positions into u, i, r); batch b is [bounds[b], bounds[b+1]);
    group: each rating's user's number among its batch's users (0, 1, ...); groups: the most users in a batch."""

    u: np.ndarray
    i: np.ndarray
    r: np.ndarray
    by_item: np.ndarray
    bounds: np.ndarray
    group: np.ndarray
    groups: int

    @property
    def batches(self) -> int:
        return len(self.bounds) - 1


@dataclass
class State:
    """The trained rows, mu, and Adam's moments; steps taken."""

    P: np.ndarray
    Q: np.ndarray
    mu: np.ndarray  # shape (1,)
    moments: tuple[np.ndarray, ...]  # mP, vP, mQ, vQ, m_mu, v_mu
    steps: int = 0

    @classmethod
    def start(cls, P: np.ndarray, Q: np.ndarray, mu: float) -> State:
        P, Q = np.ascontiguousarray(P, np.float32), np.ascontiguousarray(Q, np.float32)
        mu_array = np.array([mu], np.float32)
        moments = tuple(np.zeros_like(a) for a in (P, P, Q, Q, mu_array, mu_array))
        return cls(P, Q, mu_array, moments)


def available() -> bool:
    return numba is not None


def make_plan(
    users, items, ratings, num_users: int, num_items: int, batch_size: int, seed: int, compiled: bool | None = None
) -> Plan:
    """A fixed random partition of the ratings into ceil(ratings / batch_size) batches, each rating in one drawn
    at random (so batch_size on average, give or take its square root), grouped; by numba's code where it is
    installed (`compiled` None), else or when False by numpy's (the same plan). Drawing a batch per rating
    rather than permuting the ratings lets each batch be gathered in one pass in the ratings' order: 0.25 s
    instead of 1 s on 9M ratings."""
    count = len(ratings)
    batch_of = np.random.default_rng(seed).integers(0, max(1, -(-count // batch_size)), count, dtype=np.int32)
    bounds = np.zeros(max(1, -(-count // batch_size)) + 1, np.int64)
    np.cumsum(np.bincount(batch_of, minlength=len(bounds) - 1), out=bounds[1:])
    users = np.ascontiguousarray(users, np.int32)
    items = np.ascontiguousarray(items, np.int32)
    ratings = np.ascontiguousarray(ratings, np.float32)
    u, i = np.empty(count, np.int32), np.empty(count, np.int32)
    r, by_item, group = np.empty(count, np.float32), np.empty(count, np.int64), np.empty(count, np.int32)
    grouping = _plan_compiled if (numba is not None if compiled is None else compiled) else _plan_numpy
    grouping(users, items, ratings, batch_of, bounds, num_users, num_items, u, i, r, by_item, group)
    return Plan(u, i, r, by_item, bounds, group, int(group.max()) + 1 if count else 0)


def _plan_numpy(users, items, ratings, batch_of, bounds, num_users, num_items, u, i, r, by_item, group) -> None:
    order = np.argsort(batch_of, kind="stable")
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[start:end]
        rows = rows[np.argsort(users[rows], kind="stable")]
        u[start:end], i[start:end], r[start:end] = users[rows], items[rows], ratings[rows]
        by_item[start:end] = start + np.argsort(i[start:end], kind="stable")
        group[start:end] = np.cumsum(np.diff(u[start:end], prepend=-1) != 0) - 1


class NumpySteps:
    """The step in numpy array operations: the fallback, and the reference the compiled step is tested against."""

    name = "numpy"

    def step(self, state: State, plan: Plan, batch: int, l2: float, wd: float, lr: float, err: np.ndarray) -> float:
        start, end = int(plan.bounds[batch]), int(plan.bounds[batch + 1])
        P, Q, mu = state.P, state.Q, state.mu
        k = P.shape[1] - 1
        u, i, r = plan.u[start:end], plan.i[start:end], plan.r[start:end]
        size = end - start
        e = np.einsum("ij,ij->i", P[u, :k], Q[i, :k]) + P[u, k] + Q[i, k] + mu[0] - r
        scale = np.float32(2.0 / size)
        # users: contiguous groups
        first = np.flatnonzero(np.diff(u, prepend=-1))
        rows_u, count_u = u[first], np.diff(np.append(first, size)).astype(np.float32)
        other = Q[i].copy()
        other[:, k] = 1.0
        grad_u = np.add.reduceat(e[:, None] * other, first) + l2 * count_u[:, None] * P[rows_u]
        # items: through by_item
        order = plan.by_item[start:end] - start
        sorted_i = i[order]
        first_i = np.flatnonzero(np.diff(sorted_i, prepend=-1))
        rows_i, count_i = sorted_i[first_i], np.diff(np.append(first_i, size)).astype(np.float32)
        other = P[u[order]].copy()
        other[:, k] = 1.0
        grad_i = np.add.reduceat(e[order, None] * other, first_i) + l2 * count_i[:, None] * Q[rows_i]
        mP, vP, mQ, vQ, m_mu, v_mu = state.moments
        _adam_numpy(P, mP, vP, rows_u, grad_u, scale, wd, lr)
        _adam_numpy(Q, mQ, vQ, rows_i, grad_i, scale, wd, lr)
        _adam_numpy(mu, m_mu, v_mu, np.zeros(1, np.int64), np.array([e.sum()], np.float32), scale, wd, lr)
        return float(np.dot(e.astype(np.float64), e))


def _adam_numpy(w, m, v, rows, grad, scale, wd, lr) -> None:
    g = (scale * grad + wd * w[rows]).astype(np.float32)
    m[rows] = BETA1 * m[rows] + (1 - BETA1) * g
    v[rows] = BETA2 * v[rows] + (1 - BETA2) * g * g
    w[rows] -= (lr * m[rows] / (np.sqrt(v[rows]) + EPSILON)).astype(np.float32)


class CompiledSteps:
    """The step compiled by numba (parallel, nogil), from its on-disk cache when the image build warmed it. Each
    pass is cut into 4 x `threads` runs (default: numba's thread count), which numba's threads share out."""

    name = "numba"

    def __init__(self, threads: int | None = None):
        self.threads = threads or numba.get_num_threads()
        self.chunks = self.threads * 4  # runs of whole groups per pass, spread over the threads
        self._partial = np.zeros((self.chunks, 2), np.float64)  # per run: squared and summed errors
        self._old = None  # the batch's users' rows before their step

    def step(self, state: State, plan: Plan, batch: int, l2: float, wd: float, lr: float, err: np.ndarray) -> float:
        mP, vP, mQ, vQ, m_mu, v_mu = state.moments
        if self._old is None or self._old.shape != (plan.groups, state.P.shape[1]):
            self._old = np.empty((plan.groups, state.P.shape[1]), np.float32)
        f32 = np.float32
        return _step_compiled(
            state.P, state.Q, state.mu, mP, vP, mQ, vQ, m_mu, v_mu, self._old, self._partial,
            plan.u, plan.i, plan.r, plan.by_item, plan.group, int(plan.bounds[batch]), int(plan.bounds[batch + 1]),
            err, f32(l2), f32(wd), f32(lr),
        )  # fmt: skip


def steps() -> NumpySteps | CompiledSteps:
    """The compiled step where numba is installed (the training image), else numpy's."""
    return CompiledSteps() if numba is not None else NumpySteps()


def run_epoch(state: State, plan: Plan, stepper, epoch: int, seed: int, lr: float, l2: float, wd: float, stop=None):
    """One pass over the batches in a random order: (ratings seen, summed squared error). `stop()` is asked
    after each batch (SIGTERM)."""
    err = np.empty(int(np.max(np.diff(plan.bounds))) if plan.batches else 0, np.float32)
    seen, squared = 0, 0.0
    for batch in np.random.default_rng(seed + epoch).permutation(plan.batches):
        if plan.bounds[batch + 1] == plan.bounds[batch]:  # a batch no rating drew
            continue
        state.steps += 1
        t = state.steps
        step_lr = lr * math.sqrt(1 - BETA2**t) / (1 - BETA1**t)
        squared += stepper.step(state, plan, int(batch), l2, wd, step_lr, err)
        seen += int(plan.bounds[batch + 1] - plan.bounds[batch])
        if stop is not None and stop():
            break
    return seen, squared


def warm() -> float:
    """Compile (or load from numba's cache) every kernel on a tiny problem: seconds taken. The image build calls
    it so that jobs load the compiled code instead of compiling it."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 7, 64), rng.integers(0, 5, 64)
    ratings = rng.integers(1, 6, 64).astype(np.float32)
    plan = make_plan(users, items, ratings, 7, 5, 16, 0)
    state = State.start(rng.normal(0, 0.1, (7, 5)), rng.normal(0, 0.1, (5, 5)), 3.0)
    run_epoch(state, plan, steps(), 0, 0, 0.01, 0.01, 0.0)
    return time.perf_counter() - started


def load(stepper) -> float:
    """Seconds to have the compiled kernels ready (loaded from the cache, or compiled); 0 for numpy's."""
    return warm() if isinstance(stepper, CompiledSteps) else 0.0


def describe(stepper) -> str:
    if isinstance(stepper, CompiledSteps):
        layer = numba.threading_layer() if _ran_parallel() else "?"
        return f"numba {numba.__version__}, {stepper.threads} threads ({layer})"
    return "numpy (numba not installed)"


def _ran_parallel() -> bool:
    try:
        numba.threading_layer()
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------ compiled kernels
if numba is not None:
    # numba's workqueue threads wait on a condition variable between passes. Its OpenMP layer (libgomp, which
    # MXNet's operators also use) spins first: on 2 cores shared with other work that cut 1M ratings from
    # 16M ratings/s to 1.8M (OMP_WAIT_POLICY=PASSIVE brings it back). A job's NUMBA_THREADING_LAYER wins.
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        numba.config.THREADING_LAYER = "workqueue"
    _jit = {"cache": True, "nogil": True, "fastmath": True}
    if os.environ.get("BYOC_MF_KERNEL_NO_CACHE"):  # bench: the cold compile time
        _jit["cache"] = False

    @njit(parallel=True, **_jit)
    def _plan_compiled(users, items, ratings, batch_of, bounds, num_users, num_items, u, i, r, by_item, group):
        # the ratings into their batches, in their order (one write stream per batch)
        at = bounds[:-1].copy()
        by_batch = np.empty((len(ratings), 2), np.int32)
        rated = np.empty(len(ratings), np.float32)
        for j in range(len(ratings)):
            q = at[batch_of[j]]
            at[batch_of[j]] += 1
            by_batch[q, 0], by_batch[q, 1], rated[q] = users[j], items[j], ratings[j]
        for b in prange(len(bounds) - 1):
            start, end = bounds[b], bounds[b + 1]
            slots = np.zeros(num_users + 1, np.int64)  # counting sort by user, stable
            for p in range(start, end):
                slots[by_batch[p, 0] + 1] += 1
            for x in range(num_users):
                slots[x + 1] += slots[x]
            for p in range(start, end):
                user = by_batch[p, 0]
                q = start + slots[user]
                slots[user] += 1
                u[q], i[q], r[q] = user, by_batch[p, 1], rated[p]
            number = -1
            for q in range(start, end):
                if q == start or u[q] != u[q - 1]:
                    number += 1
                group[q] = number
            slots = np.zeros(num_items + 1, np.int64)  # the same positions by item
            for q in range(start, end):
                slots[i[q] + 1] += 1
            for x in range(num_items):
                slots[x + 1] += slots[x]
            for q in range(start, end):
                by_item[start + slots[i[q]]] = q
                slots[i[q]] += 1

    @njit(inline="always", **_jit)
    def _cut(keys, positions, start, end, chunk, chunks):
        """The first position at or after chunk/chunks of [start, end) that starts a group of equal keys."""
        if chunk >= chunks:
            return end
        p = start + (end - start) * chunk // chunks
        if chunk == 0:
            return start
        if positions is None:
            while p < end and keys[p] == keys[p - 1]:
                p += 1
        else:
            while p < end and keys[positions[p]] == keys[positions[p - 1]]:
                p += 1
        return p

    @njit(inline="always", **_jit)
    def _adam(w, m, v, g, scale, wd, lr):
        b1, b2, eps = np.float32(BETA1), np.float32(BETA2), np.float32(EPSILON)
        one = np.float32(1.0)
        for c in range(w.shape[0]):
            grad = scale * g[c] + wd * w[c]
            m[c] = b1 * m[c] + (one - b1) * grad
            v[c] = b2 * v[c] + (one - b2) * grad * grad
            w[c] -= lr * m[c] / (np.sqrt(v[c]) + eps)

    # No fusion of the passes' loops: numba would merge the two `prange(chunks)` loops into one, and a thread
    # would then read rows another thread has already stepped (its analysis misses the writes in _adam).
    @njit(parallel={"fusion": False}, **_jit)
    def _step_compiled(
        P, Q, mu, mP, vP, mQ, vQ, m_mu, v_mu, old, partial, u, i, r, by_item, group, start, end, err, l2, wd, lr
    ):
        k = P.shape[1] - 1
        chunks = partial.shape[0]
        scale = np.float32(2.0 / (end - start))
        base = mu[0]
        # A. by user: errors, the user's gradient, its row as it was, its step
        for chunk in prange(chunks):
            p, stop = _cut(u, None, start, end, chunk, chunks), _cut(u, None, start, end, chunk + 1, chunks)
            g = np.empty(k + 1, np.float32)
            squared, total = 0.0, 0.0
            while p < stop:
                user, row = u[p], P[u[p]]
                for c in range(k + 1):
                    g[c] = 0
                n = 0
                while p < stop and u[p] == user:
                    other = Q[i[p]]
                    e = row[k] + other[k] + base - r[p]
                    for c in range(k):
                        e += row[c] * other[c]
                    err[p - start] = e
                    squared += np.float64(e) * e
                    total += e
                    for c in range(k):
                        g[c] += e * other[c]
                    g[k] += e
                    n += 1
                    p += 1
                decay = l2 * np.float32(n)
                kept = old[group[p - 1]]
                for c in range(k + 1):
                    kept[c] = row[c]
                    g[c] += decay * row[c]
                _adam(row, mP[user], vP[user], g, scale, wd, lr)
            partial[chunk, 0], partial[chunk, 1] = squared, total
        # B. by item: the gradient from the users' rows as they were, the item's step
        for chunk in prange(chunks):
            p, stop = _cut(i, by_item, start, end, chunk, chunks), _cut(i, by_item, start, end, chunk + 1, chunks)
            g = np.empty(k + 1, np.float32)
            while p < stop:
                item = i[by_item[p]]
                for c in range(k + 1):
                    g[c] = 0
                n = 0
                while p < stop and i[by_item[p]] == item:
                    j = by_item[p]
                    e, row = err[j - start], old[group[j]]
                    for c in range(k):
                        g[c] += e * row[c]
                    g[k] += e
                    n += 1
                    p += 1
                decay = l2 * np.float32(n)
                row = Q[item]
                for c in range(k + 1):
                    g[c] += decay * row[c]
                _adam(row, mQ[item], vQ[item], g, scale, wd, lr)
        g_mu = np.empty(1, np.float32)
        g_mu[0] = partial[:, 1].sum()
        _adam(mu, m_mu, v_mu, g_mu, scale, wd, lr)
        return partial[:, 0].sum()
