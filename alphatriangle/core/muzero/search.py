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

With ``[muzero] stochastic`` (Stochastic MuZero), a move after which the game deals (the move
that plays the last piece of a hand: the root's hand size says which depths, every
``slots`` moves after that) reaches a *chance node*: the model's afterstate, whose value is
the afterstate's Q and whose edges are ``mcts.chance_outcomes`` deals drawn from the model's
own chance distribution (one shape per slot; from the game's generator in self-play, from a
fixed seed for a player), each with its chance renormalised over the deals drawn. A descent
takes the deal with the highest ``P(c) / (1 + N(c))``; the deal's edge has no reward and no
discount, so a chance node's value is the mean of the returns through its deals. The search
never sees a deal the real game has not made: every deal in the tree is the model's.

How the descent chooses is ``mcts.variant``, as for AlphaZero, decided once when the searcher
is built (``GumbelTree`` or ``PuctTree``):

- ``"gumbel"`` (Danihelka et al. 2022): the rules of ``core.gumbel_rules``, the reference the
  C++ search on the real game follows too, on the node's edges (the legal moves at the root,
  every action below it). The completed Q of an unexpanded edge is the mixed value, the
  completed Q are min-max rescaled over the node's edges, by a range of at least ``[muzero]
  q_range_floor``, into ``sigma``; the root spends the
  simulations by sequential halving over the top ``considered_actions`` by ``g + logits`` (``g``
  the root's Gumbel noise, zeros without noise), a deeper node descends to ``argmax pi' - N / (1
  + sum N)`` with ``pi' = softmax(logits + sigma)``. The move is the best by ``g + logits +
  sigma`` among the most visited root edges; the policy target is ``pi'`` at the root. No
  Dirichlet noise.
- ``"puct"``: ``Q_norm(s, a) + P(s, a) sqrt(N(s)) / (1 + N(s, a)) (c1 + log((N(s) + c2 + 1) /
  c2))``, where ``Q_norm`` rescales Q by the lowest and highest Q seen in the tree so far (scores
  have no fixed range), by at least ``[muzero] q_range_floor``, and an unvisited edge takes the
  node's value; Dirichlet noise on the root
  priors in self-play (``core.search.dirichlet_noise``); the policy target is the visit
  distribution, the move the caller's (temperature, then the most visited).

Ties go to the lowest action id.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from trianglengin import GameState

from alphatriangle.core import gumbel_rules as rules
from alphatriangle.core.features import (
    NUM_GLOBAL_FEATURES,
    SLOT_FEATURES,
    extract_batch,
    feature_spec,
    valid_mask_from_grid,
)
from alphatriangle.core.muzero.network import WINDOW, MuZeroNet, cell_masks
from alphatriangle.core.muzero.support import from_logits
from alphatriangle.core.search import SearchResult, SearchSettings, dirichlet_noise


class LatentModel(Protocol):
    """What the search calls: numpy in and out, one call for a batch of ``B`` items."""

    def initial(self, observations: Sequence[object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Roots: ``(latent states [B, ...], policy logits [B, A], values [B])``."""
        ...

    def recurrent(
        self, latents: np.ndarray, actions: np.ndarray, masks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One step: ``(next latents [B, ...], rewards [B], policy logits [B, A], values [B])``;
        ``masks [B, WINDOW]`` the cells each reward reads (``network.cell_masks``)."""
        ...

    def afterstate(
        self, latents: np.ndarray, actions: np.ndarray, masks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stochastic MuZero, a move after which the game deals: ``(afterstates [B, ...],
        rewards [B], chance logits [B, slots, codes], afterstate values [B])``."""
        ...

    def chance(
        self, afterstates: np.ndarray, codes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stochastic MuZero, the deal ``codes [B, slots]``: ``(next latents [B, ...], policy
        logits [B, A], values [B])``."""
        ...


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    out: np.ndarray = z / z.sum()
    return out


class LatentTree(ABC):
    """One game's tree. Nodes are rows ``0..size-1`` (0 the root) of arrays ``[nodes, A]``
    over their edges: ``child`` (-1: not expanded), ``prior``, ``visits``, ``value_sum`` (of
    the backed-up returns), ``reward``; ``node_value`` is each node's own predicted value.
    ``noise`` is the root's noise (``root_noise``), None without. The subclass is the variant's
    descent and result."""

    def __init__(
        self,
        settings: SearchSettings,
        latent: np.ndarray,
        logits: np.ndarray,
        value: float,
        legal: np.ndarray,
        noise: np.ndarray | None = None,
    ) -> None:
        nodes, actions = settings.simulations + 1, logits.shape[0]
        self.settings = settings
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
        self.prior[0, legal] = _softmax(logits[legal].astype(np.float64))
        self.node_value[0] = value
        self.size = 1
        self.moves = np.zeros(nodes, dtype=np.int64)
        """Moves (action edges) from the root to each node."""
        self.is_chance = np.zeros(nodes, dtype=bool)
        """Stochastic MuZero's chance nodes: afterstates whose edges are deals."""
        self.codes: dict[int, np.ndarray] = {}
        """A chance node's deals, ``[outcomes, slots]`` codes, edge ``i`` for row ``i``."""
        self.first_deal: int | None = None
        """The move (0: the root's) after which the game deals first; then every
        ``num_slots`` moves. None: no chance nodes (MuZero, or no hand known)."""
        self.num_slots = 1
        self.rng: np.random.Generator = np.random.default_rng(0)

    def plan_deals(self, hand: int, num_slots: int, rng: np.random.Generator) -> None:
        """Chance nodes after the moves that play a hand's last piece: the root's hand holds
        ``hand`` pieces, each new one ``num_slots``; deals drawn from ``rng``."""
        self.first_deal, self.num_slots, self.rng = hand - 1, num_slots, rng

    def deals_after(self, node: int) -> bool:
        """Whether the game deals after a move from decision ``node``."""
        if self.first_deal is None:
            return False
        move = int(self.moves[node])
        return move >= self.first_deal and (move - self.first_deal) % self.num_slots == 0

    def select_outcome(self, node: int) -> int:
        """The deal a simulation takes at chance ``node``: ``argmax P(c) / (1 + N(c))`` over
        its drawn deals (Stochastic MuZero's rule: visits follow the chances)."""
        count = len(self.codes[node])
        score = self.prior[node, :count] / (1 + self.visits[node, :count])
        return int(np.argmax(score))

    def expand_chance(
        self,
        path: list[tuple[int, int]],
        afterstate: np.ndarray,
        reward: float,
        chance_logits: np.ndarray,
        value: float,
    ) -> None:
        """Add the chance node at the end of ``path`` (an afterstate of value ``value``): its
        ``mcts.chance_outcomes`` deals drawn from ``chance_logits [slots, codes]``, one shape
        per slot, the same deal drawn twice kept once; each deal's chance the product of its
        shapes', renormalised over the deals kept. Then back ``value`` up the path."""
        probs = np.exp(chance_logits - chance_logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        slots, codes = probs.shape
        drawn = np.stack(
            [
                self.rng.choice(codes, size=self.settings.chance_outcomes, p=probs[s])
                for s in range(slots)
            ],
            axis=1,
        )
        deals = np.unique(drawn, axis=0)
        chance = probs[np.arange(slots)[None, :], deals].prod(axis=1)
        node = self.size
        self.is_chance[node] = True
        self.codes[node] = deals
        self.expand(path, afterstate, reward, np.zeros(self.prior.shape[1]), value)
        self.prior[node] = 0.0
        self.prior[node, : len(deals)] = chance / chance.sum()

    @staticmethod
    @abstractmethod
    def root_noise(
        rng: np.random.Generator, legal: np.ndarray, settings: SearchSettings
    ) -> np.ndarray | None:
        """The root's noise, drawn from the game's generator (None: none)."""

    @abstractmethod
    def select(self, node: int) -> int:
        """The edge the descent takes at ``node`` (legal moves only at the root)."""

    @abstractmethod
    def result(self) -> SearchResult:
        """Root visits, the policy target, the move (Gumbel) and the root value."""

    def mean_value(self, node: int) -> float:
        """The node's value: its own prediction and every return backed up through it."""
        visits = int(self.visits[node].sum())
        return float((self.node_value[node] + self.value_sum[node].sum()) / (1 + visits))

    def descend(self) -> list[tuple[int, int]]:
        """Edges ``(node, action)`` from the root to the first one not expanded yet."""
        path, node = [], 0
        while True:
            action = self.select_outcome(node) if self.is_chance[node] else self.select(node)
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
        self.moves[node] = self.moves[parent] + (0 if self.is_chance[parent] else 1)
        self.latents.append(latent)
        self.depth_sum += len(path)
        ret = value
        for up, edge in reversed(path):
            if self.is_chance[up]:
                # A deal takes no time and scores nothing: the return passes unchanged, and
                # the chance node's value is the mean over the deals its visits took.
                self.visits[up, edge] += 1
                self.value_sum[up, edge] += ret
                continue
            ret = self.reward[up, edge] + self.settings.discount * ret
            self.visits[up, edge] += 1
            self.value_sum[up, edge] += ret
            q = self.value_sum[up, edge] / self.visits[up, edge]
            self.low, self.high = min(self.low, q), max(self.high, q)

    def _visits(self) -> dict[int, int]:
        counts = self.visits[0]
        return {int(a): int(counts[a]) for a in np.flatnonzero(self.legal)}

    def _depth(self) -> float:
        return self.depth_sum / max(1, self.size - 1)


class PuctTree(LatentTree):
    """PUCT on min-max normalised Q; Dirichlet noise mixed into the root's priors."""

    def __init__(
        self,
        settings: SearchSettings,
        latent: np.ndarray,
        logits: np.ndarray,
        value: float,
        legal: np.ndarray,
        noise: np.ndarray | None = None,
    ) -> None:
        super().__init__(settings, latent, logits, value, legal, noise)
        if noise is not None:
            eps = settings.dirichlet_epsilon
            self.prior[0, legal] = (1.0 - eps) * self.prior[0, legal] + eps * noise[legal]

    @staticmethod
    def root_noise(
        rng: np.random.Generator, legal: np.ndarray, settings: SearchSettings
    ) -> np.ndarray | None:
        if settings.dirichlet_epsilon <= 0:
            return None
        return dirichlet_noise(rng, legal, settings.dirichlet_alpha)

    def _normalised(self, q: np.ndarray) -> np.ndarray:
        if self.high > self.low:
            return (q - self.low) / max(self.high - self.low, self.settings.q_range_floor)
        return np.zeros_like(q)

    def select(self, node: int) -> int:
        settings = self.settings
        visits = self.visits[node]
        parent = 1 + int(visits.sum())
        q = np.where(
            visits > 0, self.value_sum[node] / np.maximum(visits, 1), self.mean_value(node)
        )
        c = settings.pb_c_init + math.log((parent + settings.pb_c_base + 1) / settings.pb_c_base)
        score = self._normalised(q) + self.prior[node] * math.sqrt(parent) / (1 + visits) * c
        if node == 0:
            score = np.where(self.legal, score, -np.inf)
        return int(np.argmax(score))

    def result(self) -> SearchResult:
        counts = self.visits[0]
        policy = (counts / max(1, int(counts.sum()))).astype(np.float32)
        return SearchResult(
            self._visits(), policy, None, self._depth(), root_value=self.mean_value(0)
        )


class GumbelTree(LatentTree):
    """The Gumbel rules of ``core.gumbel_rules``; ``noise`` is the root's g(a) by action id
    (zeros without noise)."""

    def __init__(
        self,
        settings: SearchSettings,
        latent: np.ndarray,
        logits: np.ndarray,
        value: float,
        legal: np.ndarray,
        noise: np.ndarray | None = None,
    ) -> None:
        super().__init__(settings, latent, logits, value, legal, noise)
        self.root_edges = np.flatnonzero(legal)
        """The root's edges: its legal moves, in action-id order."""
        self.gumbel = np.zeros(logits.shape[0]) if noise is None else noise.astype(np.float64)
        considered = min(settings.considered_actions, len(self.root_edges))
        self.schedule = rules.halving_schedule(considered, settings.simulations)

    @staticmethod
    def root_noise(
        rng: np.random.Generator, legal: np.ndarray, settings: SearchSettings
    ) -> np.ndarray | None:
        return np.asarray(rng.gumbel(size=legal.shape[0]))

    def edges(self, node: int) -> np.ndarray | slice:
        """The node's edges as an index of its rows: the legal moves at the root, all below."""
        return self.root_edges if node == 0 else slice(None)

    def completed_sigma(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, sigma)`` over the node's ``edges``: ``rules.logits`` of its priors and
        ``rules.sigma`` of its completed Q."""
        edges = self.edges(node)
        visits, prior = self.visits[node, edges], self.prior[node, edges]
        known = visits > 0
        q = np.divide(self.value_sum[node, edges], visits, out=np.zeros_like(prior), where=known)
        completed = rules.completed_q(float(self.node_value[node]), prior, q, visits)
        s = self.settings
        floor = s.q_range_floor
        return rules.logits(prior), rules.sigma(completed, visits, s.c_visit, s.c_scale, floor)

    def select(self, node: int) -> int:
        logits, sigma = self.completed_sigma(node)
        visits = self.visits[node, self.edges(node)]
        if node != 0:
            return rules.interior_edge(logits, sigma, visits)
        g = self.gumbel[self.root_edges]
        return int(self.root_edges[rules.root_edge(self.schedule, visits, g, logits, sigma)])

    def result(self) -> SearchResult:
        logits, sigma = self.completed_sigma(0)
        improved = np.zeros(self.prior.shape[1], dtype=np.float32)
        improved[self.root_edges] = rules.improved_policy(logits, sigma)
        visits, g = self.visits[0, self.root_edges], self.gumbel[self.root_edges]
        action = int(self.root_edges[rules.root_action(visits, g, logits, sigma)])
        return SearchResult(
            self._visits(), improved, action, self._depth(), root_value=self.mean_value(0)
        )


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
        self, latents: np.ndarray, actions: np.ndarray, masks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            s, reward, logits, value = self.model.recurrent(
                torch.from_numpy(latents).to(self.device),
                torch.from_numpy(actions).to(self.device),
                torch.from_numpy(masks).to(self.device),
            )
        self.evaluations += len(actions)
        return (
            s.cpu().numpy(),
            reward.float().cpu().numpy(),
            logits.float().cpu().numpy(),
            value.float().cpu().numpy(),
        )

    def afterstate(
        self, latents: np.ndarray, actions: np.ndarray, masks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            reward, after = self.model.dynamics(
                torch.from_numpy(latents).to(self.device),
                torch.from_numpy(actions).to(self.device),
                torch.from_numpy(masks).to(self.device),
            )
            q, sigma = self.model.afterstate_predict(after)
        self.evaluations += len(actions)
        return (
            after.cpu().numpy(),
            from_logits(reward).float().cpu().numpy(),
            sigma.double().cpu().numpy(),
            from_logits(q).float().cpu().numpy(),
        )

    def chance(
        self, afterstates: np.ndarray, codes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            s = self.model.chance(
                torch.from_numpy(afterstates).to(self.device),
                torch.from_numpy(codes).to(self.device),
            )
            logits, value = self.model.predict(s)
        self.evaluations += len(codes)
        return (
            s.cpu().numpy(),
            logits.float().cpu().numpy(),
            from_logits(value).float().cpu().numpy(),
        )


class LatentSearcher:
    """MuZero's search as self-play and the players use it (``Searcher``): per game, its
    generator (for the root noise); the move is Gumbel's choice, or (PUCT) the caller's from
    the visit counts. The variant's tree (``GumbelTree`` or ``PuctTree``) is chosen here, once."""

    def __init__(self, model: LatentModel, settings: SearchSettings) -> None:
        self.model = model
        self.settings = settings
        self.tree: type[PuctTree | GumbelTree] = (
            GumbelTree if settings.variant == "gumbel" else PuctTree
        )

    def game(self, rng: np.random.Generator) -> np.random.Generator:
        return rng

    def search(
        self, games: Sequence[np.random.Generator], states: Sequence[GameState]
    ) -> list[SearchResult]:
        grid, other = extract_batch(states)
        legal = valid_mask_from_grid(grid)
        rngs = list(games) if self.settings.noise else [None] * len(games)
        return [tree.result() for tree in self.run(states, legal, rngs, other)]

    def played(
        self, game: np.random.Generator, state: GameState, action: int, result: SearchResult
    ) -> np.random.Generator:
        return game

    def run(
        self,
        observations: Sequence[object],
        legal: np.ndarray,
        rngs: Sequence[np.random.Generator | None],
        other: np.ndarray | None = None,
    ) -> list[LatentTree]:
        """One search per observation, in lockstep: every simulation round makes one
        ``model.recurrent`` call for all the trees (Stochastic MuZero: one call of each kind
        of expansion the round needs, ``_kind``). ``legal`` bool ``[G, A]`` are the real
        games' legal moves; ``rngs[i]`` draws root i's noise (None: no noise); ``other``
        ``[G, F]`` the roots' extra features, whose hands say which cells each edge's reward
        reads (``network.cell_masks``, by the edge's depth below the root; None: the whole
        window everywhere)."""
        latents, logits, values = self.model.initial(observations)
        trees: list[LatentTree] = []
        for i, rng in enumerate(rngs):
            noise = None if rng is None else self.tree.root_noise(rng, legal[i], self.settings)
            tree = self.tree(
                self.settings, latents[i], logits[i], float(values[i]), legal[i], noise
            )
            if self.settings.stochastic and other is not None:
                # Without root noise (a player), the deals are drawn from a fixed seed, so the
                # same position searches the same way.
                hand, num_slots = hand_of(other[i])
                tree.plan_deals(hand, num_slots, np.random.default_rng(0) if rng is None else rng)
            trees.append(tree)
        for _ in range(self.settings.simulations):
            paths = [tree.descend() for tree in trees]
            kinds = [_kind(tree, path) for tree, path in zip(trees, paths, strict=True)]
            for kind in ("move", "deal_move", "deal"):
                chosen = [i for i, k in enumerate(kinds) if k == kind]
                if chosen:
                    self._expand(
                        kind,
                        [trees[i] for i in chosen],
                        [paths[i] for i in chosen],
                        None if other is None else other[chosen],
                    )
        return trees

    def _expand(
        self,
        kind: str,
        trees: list[LatentTree],
        paths: list[list[tuple[int, int]]],
        other: np.ndarray | None,
    ) -> None:
        """One model call for the paths of one ``kind`` (``_kind``), and their expansions."""
        parents = np.stack([t.latents[p[-1][0]] for t, p in zip(trees, paths, strict=True)])
        edges = np.array([p[-1][1] for p in paths], dtype=np.int64)
        if kind == "deal":
            codes = np.stack(
                [t.codes[p[-1][0]][p[-1][1]] for t, p in zip(trees, paths, strict=True)]
            )
            nxt, child_logits, child_values = self.model.chance(parents, codes)
            for i, (tree, path) in enumerate(zip(trees, paths, strict=True)):
                tree.expand(path, nxt[i], 0.0, child_logits[i], float(child_values[i]))
            return
        masks = np.ones((len(trees), WINDOW), dtype=np.float32)
        if other is not None:
            moves = np.array([t.moves[p[-1][0]] for t, p in zip(trees, paths, strict=True)])
            masks = cell_masks(other, edges, moves, feature_spec().action_dim)
        if kind == "deal_move":
            after, rewards, chance_logits, q = self.model.afterstate(parents, edges, masks)
            for i, (tree, path) in enumerate(zip(trees, paths, strict=True)):
                tree.expand_chance(path, after[i], float(rewards[i]), chance_logits[i], float(q[i]))
            return
        nxt, rewards, child_logits, child_values = self.model.recurrent(parents, edges, masks)
        for i, (tree, path) in enumerate(zip(trees, paths, strict=True)):
            tree.expand(path, nxt[i], float(rewards[i]), child_logits[i], float(child_values[i]))


def _kind(tree: LatentTree, path: list[tuple[int, int]]) -> str:
    """What expands the end of ``path``: ``"deal"`` (an edge of a chance node), ``"deal_move"``
    (a move after which the game deals: an afterstate) or ``"move"``."""
    parent = path[-1][0]
    if tree.is_chance[parent]:
        return "deal"
    return "deal_move" if tree.deals_after(parent) else "move"


def hand_of(other: np.ndarray) -> tuple[int, int]:
    """``(pieces in the hand, slots)`` of one position's extra features ``[F]``."""
    num_slots = (len(other) - NUM_GLOBAL_FEATURES) // SLOT_FEATURES
    present = other[: num_slots * SLOT_FEATURES : SLOT_FEATURES]
    return int(np.rint(present.sum())), num_slots
