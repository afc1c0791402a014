"""Layer-parallel LPOM over ``torch.distributed``: each process owns a contiguous run of layers.

Process ``r`` owns the weights ``W[a..b]`` and the activations ``X[a+1..b+1]`` they produce. Per mini-batch, every
process runs the forward pass (all weights are current everywhere), then the activation sweeps in the odd-even
schedule, sending only its boundary activations to its neighbours after each half-sweep; then it updates its own
weights and broadcasts them. An update reads only its neighbours, so the synchronous mode gives the weights of
``LPOM(schedule='odd-even')`` in one process, bit for bit, for any number of processes (the TPAMI version's
schedule). With ``staleness`` above 0 (or None) a half-sweep does not wait for its neighbours' current boundaries:
it uses the newest that has arrived (the seed's asynchronous scheme); the processes meet at each weight broadcast.

Backend: gloo (LPOM's solver runs on the CPU). ``optnets.recipes.lpom_distributed`` trains Fashion-MNIST with it
under torchrun.
"""

import torch
import torch.distributed as dist
from numpy.typing import ArrayLike

from . import solver
from .estimator import BaseLPOM


def owned_layers(layers: int, world: int, rank: int) -> range:
    """The indices of the weights process ``rank`` owns: a contiguous, balanced split of ``layers``."""
    if layers < world:
        raise ValueError(f'{layers} layers cannot be split over {world} processes: use at most {layers}')
    base, extra = divmod(layers, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


class _Inbox:
    """The boundary activations one neighbour sends in a step, ``count`` of them, in order."""

    def __init__(self, peer: int, like: torch.Tensor, count: int):
        self.peer, self.like, self.remaining, self.received, self.work = peer, like, count, 0, None
        self._post()

    def _post(self):
        self.work = None
        if self.remaining:
            self.buffer, self.remaining = torch.empty_like(self.like), self.remaining - 1
            self.work = dist.irecv(self.buffer, self.peer)

    def _take(self) -> torch.Tensor:
        self.work.wait()
        value, self.received = self.buffer, self.received + 1
        self._post()
        return value

    def take(self, current: torch.Tensor, at_least: int, newest: bool) -> torch.Tensor:
        """The neighbour's message number ``at_least`` (waiting for it); with ``newest``, any later one that has
        already arrived instead."""
        while self.work is not None and (self.received < at_least or newest and self.work.is_completed()):
            current = self._take()
        return current


class LayerParallelLPOM:
    """Fits ``estimator`` (an ``LPOM`` or ``LPOMConv``, its parameters
    unchanged) with its layers split over the processes of the default group; every process ends with the whole
    fitted estimator.

    ``staleness`` is how many half-sweeps old a neighbour's boundary may be: 0 waits for the current one (the
    deterministic odd-even schedule), ``k`` waits only for the one ``k`` half-sweeps back and takes any newer one
    that has arrived, ``None`` never waits (fully asynchronous). Every step ends with all the boundaries sent.
    """

    def __init__(self, estimator: BaseLPOM, staleness: int | None = 0):
        if staleness is not None and staleness < 0:
            raise ValueError(f'staleness must be None or at least 0, got {staleness}')
        self.estimator, self.staleness = estimator, staleness

    def fit(self, X: ArrayLike, y: ArrayLike) -> BaseLPOM:
        """The estimator's own mini-batches (every process draws the same weights and order from the same
        ``random_state``), each stepped by this process's layers."""
        acts, mu = self.estimator.settings()
        for x, target in self.estimator.minibatches(X, y):
            self._step(x, target, acts, mu)
        return self.estimator

    def _step(self, x, target, acts, mu):
        est, layers, weights = self.estimator, self.estimator.layers_, self.estimator.weights_
        rank, world = dist.get_rank(), dist.get_world_size()
        owners = [r for r in range(world) for _ in owned_layers(len(weights), world, r)]
        mine = owned_layers(len(weights), world, rank)
        first, last = mine.start + 1, mine.stop  # the activations this process updates
        xs = solver.forward(layers, weights, x, acts, refresh=True)
        ratios = (
            solver.contracting_ratios(layers, weights, acts, mu, est.rho_max, est.loss, est.norm_squared)
            if est.rho_max
            else None
        )
        halves = 2 * est.activation_iters
        # (neighbour, the activation I send it, the one it sends me)
        sides = [
            (peer, ours, theirs)
            for peer, ours, theirs in ((rank - 1, first, first - 1), (rank + 1, last, last + 1))
            if 0 <= peer < world
        ]
        inboxes = {peer: _Inbox(peer, xs[theirs], halves) for peer, _, theirs in sides}
        sends = []
        for half in range(halves):
            for i in range(first, last + 1):
                if i % 2 == (1 if half % 2 == 0 else 0):  # odd activations, then even ones
                    xs[i] = solver.update(i, layers, xs, weights, acts, mu, est.loss, target, ratios)
            outgoing = [(xs[ours].clone(), peer) for peer, ours, _ in sides]  # kept alive until sent
            sends += [(value, dist.isend(value, peer)) for value, peer in outgoing]
            for peer, _, theirs in sides:
                wanted = half + 1 - (self.staleness if self.staleness is not None else halves)
                xs[theirs] = inboxes[peer].take(xs[theirs], wanted, newest=self.staleness != 0)
        for peer, _, theirs in sides:  # the last boundary, which the weight update reads
            xs[theirs] = inboxes[peer].take(xs[theirs], halves, newest=True)
        for _, work in sends:
            work.wait()
        for i in mine:
            weights[i].copy_(
                solver.weight_step(layers[i], weights[i], xs[i], xs[i + 1], acts[i], est.weight_iters, est.pinv_reg)
            )
        for i, owner in enumerate(owners):
            dist.broadcast(weights[i], src=owner)
