"""MuZero's search: MCTS in the latent space of its model, many games in lockstep.

Each move, for every game: the representation encodes the real position into a latent root,
whose priors are the prediction's policy restricted to the real game's legal moves. Then
``simulations`` rounds; in each, every tree descends from its root to an edge it has not
expanded, and one call of the dynamics and prediction (``LatentModel.recurrent``) takes the
chosen edges of all the trees at once: it gives each new node its latent state, the reward of
the edge, its priors (over every action: inside the model nothing is illegal) and its value
``v``. The value is backed up the path with the rewards on the edges and the discount: going up
an edge ``(s, a)`` with reward ``r``, ``G <- r + gamma G``, and the edge's visit count and value
sum take ``G``. So the Q of an edge, ``value_sum / visits``, estimates ``r + gamma V(s')``. A
node's value, and the root value stored for the n-step targets, is the mean of its own ``v``
and every return backed up through it, ``(v(s) + sum_a value_sum(s, a)) / N(s)`` with
``N(s) = 1 + sum_a N(s, a)``.

How the descent chooses is ``mcts.variant``, as for AlphaZero:

- ``"gumbel"`` (Danihelka et al. 2022, the rules of ``scripts/patches/trimcts-1.3.0-gumbel.patch``
  on latent nodes; that patch's comment explains them). Per node, the completed Q of an
  unexpanded edge is the mixed value ``(v + sum N * sum_visited pi q / sum_visited pi) / (1 +
  sum N)``, the completed Q are min-max rescaled over the node's edges (legal ones at the root),
  and ``sigma = (c_visit + max N) c_scale Q_rescaled``. The root spends the simulations by
  sequential halving over the top ``considered_actions`` by ``g + logits`` (``g`` the root's
  Gumbel noise, zeros without noise), a deeper node descends to ``argmax pi' - N / (1 + sum N)``
  with ``pi' = softmax(logits + sigma)``. The move is the best by ``g + logits + sigma`` among
  the most visited root edges; the policy target is ``pi'`` at the root. No Dirichlet noise.
- ``"puct"``: ``Q_norm(s, a) + P(s, a) sqrt(N(s)) / (1 + N(s, a)) (c1 + log((N(s) + c2 + 1) /
  c2))``, where ``Q_norm`` rescales Q by the lowest and highest Q seen in the tree so far (scores
  have no fixed range) and an unvisited edge takes the node's value; Dirichlet noise on the root
  priors in self-play; the policy target is the visit distribution, the move the caller's
  (temperature, then the most visited).

Ties go to the lowest action id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from trianglengin import GameState

from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig
from alphatriangle.core.features import extract_batch, valid_mask_from_grid
from alphatriangle.core.muzero.network import MuZeroNet
from alphatriangle.core.search import SearchResult


class LatentModel(Protocol):
    """What the search calls: numpy in and out, one call for a batch of ``B`` items."""

    def initial(self, observations: Sequence[object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Roots: ``(latent states [B, ...], policy logits [B, A], values [B])``."""
        ...

    def recurrent(
        self, latents: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One step: ``(next latents [B, ...], rewards [B], policy logits [B, A], values [B])``."""
        ...


@dataclass(frozen=True)
class LatentSearchConfig:
    """The settings of one search (from ``[mcts]`` and ``[muzero]``)."""

    simulations: int
    discount: float
    pb_c_init: float
    pb_c_base: float
    dirichlet_alpha: float
    dirichlet_epsilon: float
    variant: Literal["puct", "gumbel"] = "gumbel"
    considered_actions: int = 16
    c_visit: float = 50.0
    c_scale: float = 0.1

    @classmethod
    def of(cls, cfg: AlphaTriangleConfig, mcts: MCTSConfig | None = None) -> LatentSearchConfig:
        mcts = mcts or cfg.mcts
        return cls(
            simulations=mcts.simulations,
            discount=cfg.muzero.discount,
            pb_c_init=cfg.muzero.pb_c_init,
            pb_c_base=cfg.muzero.pb_c_base,
            dirichlet_alpha=mcts.dirichlet_alpha,
            dirichlet_epsilon=mcts.dirichlet_epsilon,
            variant=mcts.variant,
            considered_actions=mcts.considered_actions,
            c_visit=mcts.c_visit,
            c_scale=mcts.c_scale,
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    out: np.ndarray = z / z.sum()
    return out


def halving_schedule(considered: int, simulations: int) -> list[int]:
    """Sequential halving as a schedule: root simulation ``k`` goes to the best considered
    edge with exactly ``schedule[k]`` visits. ``ceil(log2 m)`` phases; in each, every remaining
    edge gets ``max(1, n // (phases * remaining))`` visits, then the better half stays (at least
    2). With ``m = 4, n = 16``: ``0 0 0 0 1 1 1 1 2 2 3 3 4 4 5 5``."""
    if considered <= 1:
        return list(range(simulations))
    phases = math.ceil(math.log2(considered))
    visits = [0] * considered
    remaining, schedule = considered, list[int]()
    while len(schedule) < simulations:
        share = max(1, simulations // (phases * remaining))
        for _ in range(share):
            for i in range(remaining):
                schedule.append(visits[i])
                visits[i] += 1
        remaining = max(2, remaining // 2)
    return schedule[:simulations]


class LatentTree:
    """One game's tree. Nodes are rows ``0..size-1`` (0 the root) of arrays ``[nodes, A]``
    over their edges: ``child`` (-1: not expanded), ``prior``, ``visits``, ``value_sum`` (of
    the backed-up returns), ``reward``; ``node_value`` is each node's own predicted value.
    ``gumbel`` is the root's g(a) by action id (Gumbel variant; zeros: no noise), ``noise`` the
    Dirichlet noise over the legal moves (PUCT variant)."""

    def __init__(
        self,
        cfg: LatentSearchConfig,
        latent: np.ndarray,
        logits: np.ndarray,
        value: float,
        legal: np.ndarray,
        noise: np.ndarray | None = None,
        gumbel: np.ndarray | None = None,
    ) -> None:
        nodes, actions = cfg.simulations + 1, logits.shape[0]
        self.cfg = cfg
        self.legal = legal
        self.child = np.full((nodes, actions), -1, dtype=np.int32)
        self.prior = np.zeros((nodes, actions), dtype=np.float64)
        self.visits = np.zeros((nodes, actions), dtype=np.int64)
        self.value_sum = np.zeros((nodes, actions), dtype=np.float64)
        self.reward = np.zeros((nodes, actions), dtype=np.float64)
        self.node_value = np.zeros(nodes, dtype=np.float64)
        self.latents = [latent]
        self.low, self.high = math.inf, -math.inf
        self.depth_sum = 0
        prior = np.zeros(actions, dtype=np.float64)
        prior[legal] = _softmax(logits[legal].astype(np.float64))
        if noise is not None:
            eps = cfg.dirichlet_epsilon
            prior[legal] = (1.0 - eps) * prior[legal] + eps * noise
        self.prior[0], self.node_value[0] = prior, value
        self.size = 1
        self.gumbel = np.zeros(actions) if gumbel is None else gumbel.astype(np.float64)
        considered = min(cfg.considered_actions, int(legal.sum()))
        self.schedule = halving_schedule(considered, cfg.simulations)

    def mean_value(self, node: int) -> float:
        """The node's value: its own prediction and every return backed up through it."""
        visits = int(self.visits[node].sum())
        return float((self.node_value[node] + self.value_sum[node].sum()) / (1 + visits))

    def _normalised(self, q: np.ndarray) -> np.ndarray:
        if self.high > self.low:
            return (q - self.low) / (self.high - self.low)
        return np.zeros_like(q)

    def select(self, node: int) -> int:
        """The edge the descent takes at ``node`` (legal moves only at the root)."""
        if self.cfg.variant == "gumbel":
            return self._select_gumbel(node)
        cfg = self.cfg
        visits = self.visits[node]
        parent = 1 + int(visits.sum())
        q = np.where(
            visits > 0, self.value_sum[node] / np.maximum(visits, 1), self.mean_value(node)
        )
        c = cfg.pb_c_init + math.log((parent + cfg.pb_c_base + 1) / cfg.pb_c_base)
        score = self._normalised(q) + self.prior[node] * math.sqrt(parent) / (1 + visits) * c
        if node == 0:
            score = np.where(self.legal, score, -np.inf)
        return int(np.argmax(score))

    def completed_sigma(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, sigma)`` over the node's edges: log priors (``-inf`` for the root's
        illegal moves) and ``sigma(completed Q)``, rescaled over the allowed edges."""
        visits = self.visits[node]
        prior = self.prior[node]
        allowed = self.legal if node == 0 else np.ones_like(self.legal)
        known = visits > 0
        q = np.divide(self.value_sum[node], visits, out=np.zeros_like(prior), where=known)
        total = int(visits.sum())
        weight = float(prior[known].sum())
        mixed_q = float(prior[known] @ q[known]) / weight if weight > 0 else 0.0
        mixed = (self.node_value[node] + total * mixed_q) / (1 + total)
        completed = np.where(known, q, mixed)
        low, high = completed[allowed].min(), completed[allowed].max()
        scale = (self.cfg.c_visit + int(visits.max())) * self.cfg.c_scale
        sigma = scale * (completed - low) / max(high - low, 1e-8)
        logits = np.log(np.maximum(prior, np.finfo(np.float32).tiny))
        return np.where(allowed, logits, -np.inf), sigma

    def _select_gumbel(self, node: int) -> int:
        visits = self.visits[node]
        if node != 0 and not visits.any():
            return int(np.argmax(self.prior[node]))  # sigma = 0 and pi' = prior: the same choice
        logits, sigma = self.completed_sigma(node)
        if node != 0:
            improved = _softmax(logits + sigma)
            return int(np.argmax(improved - visits / (1 + visits.sum())))
        wanted = self.schedule[min(int(visits.sum()), len(self.schedule) - 1)]
        candidates = self.legal & (visits == wanted)
        if not candidates.any():
            candidates = self.legal
        score = np.where(candidates, self.gumbel + logits + sigma, -np.inf)
        return int(np.argmax(score))

    def descend(self) -> list[tuple[int, int]]:
        """Edges ``(node, action)`` from the root to the first one not expanded yet."""
        path, node = [], 0
        while True:
            action = self.select(node)
            path.append((node, action))
            nxt = int(self.child[node, action])
            if nxt < 0:
                return path
            node = nxt

    def expand(
        self,
        path: list[tuple[int, int]],
        latent: np.ndarray,
        reward: float,
        logits: np.ndarray,
        value: float,
    ) -> None:
        """Add the node at the end of ``path`` and back its value up the path."""
        parent, action = path[-1]
        node = self.size
        self.size += 1
        self.child[parent, action] = node
        self.reward[parent, action] = reward
        self.prior[node] = _softmax(logits.astype(np.float64))
        self.node_value[node] = value
        self.latents.append(latent)
        self.depth_sum += len(path)
        ret = value
        for up, edge in reversed(path):
            ret = self.reward[up, edge] + self.cfg.discount * ret
            self.visits[up, edge] += 1
            self.value_sum[up, edge] += ret
            q = self.value_sum[up, edge] / self.visits[up, edge]
            self.low, self.high = min(self.low, q), max(self.high, q)

    def result(self) -> SearchResult:
        """Root visits, the policy target, the move (Gumbel) and the root value."""
        counts = self.visits[0]
        visits = {int(a): int(counts[a]) for a in np.flatnonzero(self.legal)}
        depth = self.depth_sum / max(1, self.size - 1)
        if self.cfg.variant == "puct":
            policy = (counts / max(1, int(counts.sum()))).astype(np.float32)
            return SearchResult(visits, policy, None, depth, root_value=self.mean_value(0))
        logits, sigma = self.completed_sigma(0)
        improved = _softmax(logits + sigma).astype(np.float32)
        most = self.legal & (counts == counts[self.legal].max())
        action = int(np.argmax(np.where(most, self.gumbel + logits + sigma, -np.inf)))
        return SearchResult(visits, improved, action, depth, root_value=self.mean_value(0))


def latent_search(
    model: LatentModel,
    observations: Sequence[object],
    legal: np.ndarray,
    cfg: LatentSearchConfig,
    rngs: Sequence[np.random.Generator | None],
) -> list[LatentTree]:
    """One search per observation, in lockstep: every simulation round makes one
    ``model.recurrent`` call for all the trees. ``legal`` bool ``[G, A]`` are the real games'
    legal moves; ``rngs[i]`` draws root i's noise (Gumbel: g(a) over all action ids; PUCT:
    Dirichlet over the legal moves; None: no noise)."""
    latents, logits, values = model.initial(observations)
    trees = []
    for i, rng in enumerate(rngs):
        noise: np.ndarray | None = None
        gumbel: np.ndarray | None = None
        if rng is not None and cfg.variant == "gumbel":
            gumbel = np.asarray(rng.gumbel(size=logits.shape[1]))
        elif rng is not None and cfg.dirichlet_epsilon > 0:
            noise = rng.dirichlet(np.full(int(legal[i].sum()), cfg.dirichlet_alpha))
        trees.append(
            LatentTree(cfg, latents[i], logits[i], float(values[i]), legal[i], noise, gumbel)
        )
    for _ in range(cfg.simulations):
        paths = [tree.descend() for tree in trees]
        parents = np.stack([t.latents[p[-1][0]] for t, p in zip(trees, paths, strict=True)])
        actions = np.array([p[-1][1] for p in paths], dtype=np.int64)
        nxt, rewards, child_logits, child_values = model.recurrent(parents, actions)
        for i, (tree, path) in enumerate(zip(trees, paths, strict=True)):
            tree.expand(path, nxt[i], float(rewards[i]), child_logits[i], float(child_values[i]))
    return trees


class MuZeroEvaluator:
    """``LatentModel`` of a ``MuZeroNet``: observations are game states (features extracted
    here); one forward pass per call, latents kept as float32 numpy arrays."""

    def __init__(self, model: MuZeroNet, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.evaluations = 0
        """States evaluated so far (roots and recurrent steps)."""

    def initial(self, observations: Sequence[object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grid, other = extract_batch(observations)  # type: ignore[arg-type]
        with torch.inference_mode():
            s, logits, value = self.model.initial(
                torch.from_numpy(grid).to(self.device), torch.from_numpy(other).to(self.device)
            )
        self.evaluations += len(observations)
        return s.cpu().numpy(), logits.float().cpu().numpy(), value.float().cpu().numpy()

    def recurrent(
        self, latents: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            s, reward, logits, value = self.model.recurrent(
                torch.from_numpy(latents).to(self.device),
                torch.from_numpy(actions).to(self.device),
            )
        self.evaluations += len(actions)
        return (
            s.cpu().numpy(),
            reward.float().cpu().numpy(),
            logits.float().cpu().numpy(),
            value.float().cpu().numpy(),
        )


class LatentSearcher:
    """MuZero's search as self-play and the players use it (``Searcher``): per game, its
    generator (for the root noise); the move is Gumbel's choice, or (PUCT) the caller's from
    the visit counts."""

    def __init__(
        self,
        model: LatentModel,
        cfg: AlphaTriangleConfig,
        *,
        noise: bool,
        mcts_cfg: MCTSConfig | None = None,
    ) -> None:
        self.model = model
        self.mcts_cfg = mcts_cfg or cfg.mcts
        self.search_cfg = LatentSearchConfig.of(cfg, self.mcts_cfg)
        self.noise = noise

    def game(self, rng: np.random.Generator) -> np.random.Generator:
        return rng

    def search(
        self, games: Sequence[np.random.Generator], states: Sequence[GameState]
    ) -> list[SearchResult]:
        grid, _ = extract_batch(states)
        legal = valid_mask_from_grid(grid)
        rngs = list(games) if self.noise else [None] * len(games)
        trees = latent_search(self.model, states, legal, self.search_cfg, rngs)
        return [tree.result() for tree in trees]

    def played(self, game: np.random.Generator, state: GameState, action: int) -> None:
        pass
