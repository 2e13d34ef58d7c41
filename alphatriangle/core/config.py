"""Typed configuration of the AlphaZero core: network, search and training.

Every setting lives in exactly one of these models. The environment is trianglengin's default
``EnvConfig`` and is not configured here; shapes are derived from it.
"""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alphatriangle.errors import ConfigError, shown

# Unknown fields are refused, and so are inf and nan: TOML's `inf`/`nan` and JSON's
# `Infinity`/`NaN` parse as floats, and a non-finite weight or rate would train to garbage.
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelConfig(BaseModel):
    """Size of the policy/value network (see ``alphatriangle.core.network``)."""

    model_config = _STRICT

    channels: int = Field(32, ge=1, le=1024, description="Width of the convolutional trunk.")
    num_blocks: int = Field(
        1, ge=0, le=64, description="Residual blocks (two 3x3 convolutions each) after the stem."
    )
    extra_hidden: int = Field(
        32, ge=1, le=4096, description="Width of the MLP that embeds the extra-feature vector."
    )
    policy_hidden: int = Field(
        8, ge=1, le=1024, description="Width of the per-placement hidden layer of the policy head."
    )
    value_hidden: int = Field(
        64, ge=1, le=4096, description="Width of the value head's hidden layer."
    )
    value_scale: float = Field(
        10.0,
        gt=0,
        description="The value head predicts (final score - current score) / value_scale, "
        "so that its regression target is of order one.",
    )

    @classmethod
    def preset(cls, name: Literal["small", "large"]) -> ModelConfig:
        """A named size: ``small`` (the default, sized for CPU self-play) or ``large`` (GPU)."""
        if name == "small":
            return cls()
        if name == "large":
            return cls(
                channels=128, num_blocks=6, extra_hidden=128, policy_hidden=32, value_hidden=256
            )
        raise ValueError(f"unknown model preset {name!r}; choose 'small' or 'large'")


class MCTSConfig(BaseModel):
    """Monte Carlo tree search of ``trimcts`` as used for self-play and evaluation."""

    model_config = _STRICT

    variant: Literal["puct", "gumbel"] = Field(
        "gumbel",
        description="The search of both algorithms. 'gumbel' (the default: 1.6x PUCT-64's "
        "held-out score at the same budget, bench/search_comparison.py): Gumbel-top-k and sequential halving at "
        "the root, improved-policy targets softmax(logits + sigma(completed Q)), no Dirichlet "
        "noise, temperature or tree reuse (scripts/patches/trimcts-1.3.0-gumbel.patch); 'puct': "
        "PUCT selection, root Dirichlet noise, visit-count targets and temperature (use it with "
        "about 64 simulations). MuZero's latent search follows the same choice "
        "(alphatriangle/core/muzero/search.py).",
    )
    simulations: int = Field(32, ge=1, le=100_000, description="Simulations per move.")
    simulations_final: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Self-play's simulations grow linearly from `simulations` at weight version "
        "(learner step) 0 to this at `simulations_ramp_steps`, then stay (`simulations_at`); "
        "None: always `simulations`. The periodic evaluation keeps `simulations` unless [eval] "
        "sets its own.",
    )
    simulations_ramp_steps: int = Field(
        10_000, ge=1, description="Learner steps over which `simulations_final` is reached."
    )
    play_simulations: int = Field(
        128,
        ge=1,
        le=100_000,
        description="The trained player's simulations per move (`alphatriangle eval` and `play`, "
        "the benchmarks' held-out score): this many, or self-play's count at the checkpoint's "
        "step where that is larger (`play_simulations_at`); 1 plays with self-play's count. "
        "Self-play's network learns at its own count; at play time more search keeps paying "
        "(README, 'A player that searches more than self-play').",
    )
    cpuct: float = Field(
        1.0,
        gt=0,
        description="PUCT exploration constant. Q values are raw game scores (not normalised), "
        "so this is on the scale of score differences.",
    )
    dirichlet_alpha: float = Field(
        0.15,
        gt=0,
        description="Concentration of the root Dirichlet noise (about 10 / legal moves).",
    )
    dirichlet_epsilon: float = Field(
        0.25, ge=0, le=1, description="Weight of the root Dirichlet noise in self-play priors."
    )
    mcts_batch_size: int = Field(
        8, ge=1, le=1024, description="Leaves evaluated together in one network call."
    )
    max_depth: int = Field(
        32, ge=1, le=1000, description="Deepest tree level a simulation descends to."
    )
    temperature: float = Field(
        1.0, gt=0, description="Visit-count temperature for the first `temperature_moves` moves."
    )
    temperature_moves: int = Field(
        10,
        ge=0,
        description="Moves of an episode sampled with `temperature`; the rest take argmax.",
    )
    tree_reuse: bool = Field(
        True, description="PUCT: keep the subtree of the played move for the next search."
    )
    considered_actions: int = Field(
        16,
        ge=1,
        le=1024,
        description="Gumbel: root actions sampled by Gumbel-top-k (m) among which sequential "
        "halving spends the simulations.",
    )
    c_visit: float = Field(
        50.0,
        ge=0,
        description="Gumbel: sigma(q) = (c_visit + max visits) * c_scale * q, q rescaled to [0, 1].",
    )
    c_scale: float = Field(
        0.1,
        gt=0,
        description="Gumbel: how much Q outweighs the prior logits in sigma (see c_visit).",
    )
    chance_outcomes: int = Field(
        4,
        ge=1,
        le=1024,
        description="Deals drawn at each chance node of the tree (where the game deals), whose "
        "value is their mean; 1: no chance nodes, the tree plans against one imagined deal. "
        "Stochastic MuZero's latent search draws this many deals from its model's chance "
        "distribution at each of its chance nodes (the same deal twice counts once).",
    )

    SCHEDULE_FIELDS: ClassVar[tuple[str, ...]] = (
        "simulations_final",
        "simulations_ramp_steps",
        "play_simulations",
    )
    """Fields that pick a searcher's count (self-play's schedule, the player's count); a
    searcher runs one count, ``simulations``."""

    def simulations_at(self, step: int) -> int:
        """Self-play's simulations per move with the weights of learner step ``step``:
        ``simulations + floor((simulations_final - simulations) * min(step, ramp) / ramp)``."""
        if self.simulations_final is None:
            return self.simulations
        done = min(max(step, 0), self.simulations_ramp_steps)
        grown = (self.simulations_final - self.simulations) * done
        return self.simulations + grown // self.simulations_ramp_steps

    def play_simulations_at(self, step: int) -> int:
        """The trained player's simulations per move with the weights of learner step ``step``:
        ``max(play_simulations, simulations_at(step))``, so the player never searches less
        than the self-play that trained it."""
        return max(self.play_simulations, self.simulations_at(step))


SymmetryName = Literal[
    "identity",
    "rot60",
    "rot120",
    "rot180",
    "rot240",
    "rot300",
    "mirror0",
    "mirror60",
    "mirror120",
    "mirror180",
    "mirror240",
    "mirror300",
]
"""The isometries of the hexagonal board (``alphatriangle.core.symmetry``): turns clockwise as
drawn, and ``mirrorK``, the left-right mirror followed by the turn ``rotK``."""

CPU_GAMES_PER_WORKER = 8
"""Default games per CPU worker: batches of 64 leaves. What that buys depends on the CPU
(``bench/selfplay.py`` prints moves/s at 1 and at 8 games): on the 2026-11-24 development box
the forward pass cost half as much per state at batch 64 as at 8; on the 2026-12-03 one it
cost the same (self-play 1.01x), so there 8 games neither help nor cost."""
GPU_GAMES_PER_WORKER = 64
"""Default games per worker with a GPU share: batches of 512 leaves, to fill the device."""


class TrainConfig(BaseModel):
    """Learner, replay buffer and training-loop settings."""

    model_config = _STRICT

    batch_size: int = Field(128, ge=1, le=1_000_000, description="Samples per gradient step.")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="AdamW decoupled weight decay.")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="Shape of the learning rate after warm-up: constant or cosine to 10%."
    )
    lr_warmup_steps: int = Field(50, ge=0, description="Steps of linear learning-rate warm-up.")
    grad_clip_norm: float = Field(1.0, gt=0, description="Global gradient-norm clipping threshold.")
    value_loss_weight: float = Field(
        1.0, ge=0, description="Weight of the value loss in the total."
    )
    buffer_capacity: int = Field(
        100_000, ge=1, le=1_000_000_000, description="Replay buffer size in positions."
    )
    prioritized_replay: bool = Field(
        False, description="Sample by priority (PER) instead of uniformly."
    )
    per_alpha: float = Field(0.6, ge=0, le=1, description="PER priority exponent.")
    per_beta: float = Field(0.4, ge=0, le=1, description="PER importance-sampling exponent.")
    min_buffer_size: int = Field(
        500, ge=1, description="Positions collected before the first gradient step (warm-up)."
    )
    replay_ratio: float = Field(
        4.0, gt=0, description="Samples trained on per sample generated by self-play."
    )
    max_steps: int = Field(
        50_000,
        ge=1,
        description="Gradient steps of a training run; the cosine learning rate reaches its end "
        "there (about 2 hours on 2 CPUs).",
    )
    checkpoint_every_steps: int = Field(500, ge=1, description="Steps between model checkpoints.")
    buffer_save_every_steps: int = Field(
        2_000, ge=1, description="Steps between replay-buffer snapshots."
    )
    weights_publish_every_steps: int = Field(
        10,
        ge=1,
        description="Steps between publishing new weights to self-play workers; episode metrics "
        "are logged at the weight version, so this is also their step resolution.",
    )
    num_workers: int | None = Field(
        None,
        ge=1,
        description="Self-play workers; None: as many as keep every CPU busy next to the "
        "learner and the evaluation actor (see distributed.workers.worker_count).",
    )
    learner_threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Intra-op threads of the learner's PyTorch; None: the driver machine's cores "
        "that self-play workers leave free, at least 1 (see distributed.workers.learner_threads).",
    )
    learner_replicas: int = Field(
        1,
        ge=1,
        le=1024,
        description="AlphaZero: learner replicas under PyTorch DDP, each training an equal share "
        "of every batch; 1: one learner in the driver. The driver's is rank 0, each other one a "
        "Ray actor taking a CPU (and a GPU when the cluster has GPUs).",
    )
    games_per_worker: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Self-play games each worker plays at once; their searches share every "
        "network call (batches of up to games_per_worker x mcts.mcts_batch_size leaves). "
        "None: 8 for a worker on CPU, 64 for one with a share of a GPU.",
    )
    seed: int = Field(
        0, ge=0, description="Seed of the run (network init, buffer sampling, games)."
    )
    value_target: Literal["monte_carlo", "n_step", "discounted"] = Field(
        "n_step",
        description="AlphaZero's value target: 'n_step' value_n_steps rewards then the "
        "network's value of the position reached, 'monte_carlo' the score still to come, "
        "'discounted' the return discounted by value_discount (alphatriangle/core/targets.py).",
    )
    value_n_steps: int = Field(
        10, ge=1, le=10_000, description="n of value_target 'n_step': moves before bootstrapping."
    )
    value_discount: float = Field(
        1.0, gt=0, le=1, description="gamma of value_target 'n_step' and 'discounted'."
    )
    augment_symmetries: list[SymmetryName] = Field(
        default_factory=list,
        description="AlphaZero: board symmetries to train on; each sample is turned by one "
        "drawn uniformly from the identity and those listed that map its hand onto shapes "
        "trianglengin deals (alphatriangle/core/symmetry.py); empty: no augmentation.",
    )

    def games_at_once(self, on_gpu: bool) -> int:
        """``games_per_worker``, or its default for a worker on CPU or on a GPU share."""
        if self.games_per_worker is not None:
            return self.games_per_worker
        return GPU_GAMES_PER_WORKER if on_gpu else CPU_GAMES_PER_WORKER

    @model_validator(mode="after")
    def _check_sizes(self) -> TrainConfig:
        if self.min_buffer_size > self.buffer_capacity:
            raise ValueError(
                f"min_buffer_size ({self.min_buffer_size}) exceeds buffer_capacity "
                f"({self.buffer_capacity}); training would never start"
            )
        if self.batch_size % self.learner_replicas:
            raise ValueError(
                f"batch_size ({self.batch_size}) does not split into learner_replicas "
                f"({self.learner_replicas}) equal shares; make it a multiple"
            )
        if self.learner_replicas > 1 and self.prioritized_replay:
            # Each replica's new priorities would have to travel back to the driver's buffer.
            raise ValueError(
                "prioritized_replay is not supported with learner_replicas > 1; turn one off"
            )
        if self.learner_replicas > 1 and self.augment_symmetries:
            # A symmetry is drawn per sample of the whole batch; a replica sees only its share.
            raise ValueError(
                "augment_symmetries is not supported with learner_replicas > 1; turn one off"
            )
        if self.value_target == "discounted" and self.value_discount == 1.0:
            raise ValueError(
                "value_target 'discounted' with value_discount 1 is 'monte_carlo'; set "
                "value_discount below 1"
            )
        return self


class EvalConfig(BaseModel):
    """Periodic evaluation during training, on seeds held out from self-play."""

    model_config = _STRICT

    every_steps: int = Field(
        100, ge=0, description="Gradient steps between evaluations; 0 turns them off."
    )
    games: int = Field(8, ge=1, le=10_000, description="Games per evaluation, on seeds 0..games-1.")
    simulations: int | None = Field(
        None, ge=1, description="Simulations per move; None uses mcts.simulations."
    )


class MuZeroConfig(BaseModel):
    """MuZero's own settings (used when ``algorithm = "muzero"``); the network's size is
    ``[model]``, its search ``[mcts]`` (simulations, root noise, temperature)."""

    model_config = _STRICT

    unroll_steps: int = Field(
        5, ge=1, le=50, description="K: steps the dynamics is unrolled per training sample."
    )
    td_steps: int = Field(
        10,
        ge=1,
        le=10_000,
        description="n: value targets sum n discounted rewards, then bootstrap from the search "
        "value n moves later (none past the end of the game).",
    )
    discount: float = Field(
        0.997, gt=0, le=1, description="gamma: discount of rewards in targets and in the search."
    )
    value_support: int = Field(
        20,
        ge=1,
        le=1000,
        description="Values are categorical over -S..S of h(x) = sign(x)(sqrt(|x|+1)-1)+0.001x; "
        "20 covers returns up to about 440.",
    )
    reward_support: int = Field(
        8,
        ge=1,
        le=1000,
        description="The same for rewards; 8 covers one-move gains up to about 80.",
    )
    value_loss_weight: float = Field(
        0.25, ge=0, description="Weight of the value loss (the paper's 0.25 for reanalysed data)."
    )
    reward_read: Literal["pooled", "cells"] = Field(
        "cells",
        description="What the reward head reads of the state the dynamics reaches: 'cells' "
        "(the default) pooled features and the features at the cells the placement may cover "
        "(a window at the anchor, the shape's footprint where the hand is known); 'pooled': "
        "pooled features only, which cannot tell one move's reward from another's "
        "(bench/muzero_reward.py). Shapes the network's weights.",
    )
    root_policy: Literal["conv", "footprint"] = Field(
        "footprint",
        description="The policy head at the root, f(h(o)), where the real hand is known: "
        "'footprint' (the default) AlphaZero's head (footprint pooling, "
        "alphatriangle/core/network.py) on h(o) and the hand's footprints; 'conv' the latent "
        "head of every step, a (3, 5) convolution per slot, which learns the hand's shapes only "
        "from a bias the extra features add to the whole board. Deeper steps keep the latent "
        "head (the hand dealt next is unknown there). Shapes the network's weights.",
    )
    consistency_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of the self-supervised consistency loss (EfficientZero, Ye et al. "
        "2021): each unrolled state g(..g(h(o_t), a_t)..) is pulled toward h(o_{t+k}) of the "
        "real next observation (target without gradient), 1 - cosine per step; 0 turns it off.",
    )
    clear_oversample: float = Field(
        4.0,
        ge=1,
        le=1000,
        description="Uniform replay draws a position whose K-step unroll holds a line clear this "
        "many times as often as one that does not, each with importance weight "
        "(1 / (N P(i))) ** clear_oversample_beta (clears are about 1% of moves, so most "
        "batches would hold one or none); 1 turns it off. With "
        "train.prioritized_replay, PER's priorities decide instead.",
    )
    clear_oversample_beta: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Exponent of clear_oversample's importance weights (1 / (N P(i))) ** beta: "
        "0 (the default) leaves the oversampled unrolls weighing clear_oversample times as much "
        "in the loss (a stated bias toward the rare clears); 1 keeps the loss an unbiased "
        "estimate of the uniform one.",
    )
    stochastic: bool = Field(
        False,
        description="Stochastic MuZero (Antonoglou et al. 2022): after the move that plays the "
        "hand's last piece, the model reaches an afterstate, predicts its value and a "
        "distribution over the shapes dealt per slot (trained on the deals the game made), and "
        "the search's chance nodes draw mcts.chance_outcomes deals from it. Shapes the network "
        "(fixed when the run is created).",
    )
    probe_every: int = Field(
        100,
        ge=0,
        description="Learner steps between the muzero/* diagnostics (core.muzero.probe: on 64 "
        "fixed positions that each offer a line clear, how often the predicted reward ranks a "
        "clearing move first, and the spread of the predicted Q over the legal moves); 0 "
        "turns them off.",
    )
    q_range_floor: float = Field(
        1.0,
        gt=0,
        description="The latent search rescales Q by max(max Q - min Q, this) (Gumbel's sigma "
        "over a node's edges, PUCT's over the tree). 1 point: a line clear (4.5 points and "
        "more) still spans the whole range, while a spread of predicted Q that a model blind "
        "to the move produces (some 0.05, bench/muzero_reward.py) moves sigma by under 0.3 "
        "logits instead of several.",
    )
    pb_c_init: float = Field(
        1.25, gt=0, description="c1 of the search's pUCT rule (on min-max normalised Q)."
    )
    pb_c_base: float = Field(19_652.0, gt=0, description="c2 of the search's pUCT rule.")


MUZERO_IGNORES: dict[tuple[str, str], str] = {
    ("train", "value_loss_weight"): "its value loss is weighed by [muzero] value_loss_weight",
    ("mcts", "cpuct"): "its PUCT rule uses [muzero] pb_c_init and pb_c_base",
    ("mcts", "max_depth"): "its latent tree grows as deep as the simulations take it",
    ("mcts", "tree_reuse"): "its latent search starts afresh at every move",
}
"""Settings of the search on the real game and of AlphaZero's loss that MuZero does not read,
and what it does instead: set to anything but their defaults under ``algorithm = "muzero"``
they are refused, so that nobody tunes a knob that turns nothing."""


class AlphaTriangleConfig(BaseModel):
    """The whole configuration of a run."""

    model_config = _STRICT

    algorithm: Literal["alphazero", "muzero"] = Field(
        "alphazero",
        description="What learns: 'alphazero' (search on the real game, policy/value network) or "
        "'muzero' (a learned model searched in latent space). Fixed when the run is created.",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network size.")
    mcts: MCTSConfig = Field(default_factory=MCTSConfig, description="Tree search.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Learner and loop.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Periodic evaluation.")
    muzero: MuZeroConfig = Field(default_factory=MuZeroConfig, description="MuZero settings.")

    @model_validator(mode="after")
    def _check_algorithm_settings(self) -> AlphaTriangleConfig:
        if self.algorithm != "muzero":
            return self
        if self.train.learner_replicas > 1:
            # MuZero unrolls its model through methods that DDP's forward does not wrap.
            raise ValueError("train.learner_replicas > 1 applies to AlphaZero only; set it to 1")
        if self.train.augment_symmetries:
            raise ValueError(
                "train.augment_symmetries applies to AlphaZero only; remove it for muzero"
            )
        value_target = TrainConfig.model_fields["value_target"].default
        if self.train.value_target != value_target:
            raise ValueError(
                "train.value_target applies to AlphaZero only; MuZero's targets are set by "
                f"[muzero] td_steps and discount (remove it or set it to {value_target!r})"
            )
        for (section, name), instead in MUZERO_IGNORES.items():
            settings = getattr(self, section)
            value, default = getattr(settings, name), type(settings).model_fields[name].default
            if value != default:
                raise ValueError(
                    f"{section}.{name} = {value!r} is not used by algorithm = 'muzero' "
                    f"({instead}); remove it or set it to {default!r}"
                )
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> AlphaTriangleConfig:
        """Load a ``.toml`` or ``.json`` file; missing fields take their defaults.

        Raises ``ConfigError`` naming the file and every invalid or unknown field.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        name = shown(path)
        try:
            mode: int | None = path.stat().st_mode
        except FileNotFoundError:
            mode = None
        except OSError as err:  # a name too long, a file in the way, no permission
            raise ConfigError(f"config file {name}: {err.strerror}") from None
        if mode is not None and stat.S_ISDIR(mode):
            raise ConfigError(f"{name} is a directory; give the path of a .toml or .json file")
        if suffix not in (".toml", ".json"):
            raise ConfigError(
                f"{name}: unsupported config format {shown(suffix)!r}; use .toml or .json"
            )
        if mode is None or not stat.S_ISREG(mode):
            raise ConfigError(f"config file {name} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{name}: not a UTF-8 text file ({err.reason} at byte {err.start})"
            ) from None
        except OSError as err:
            raise ConfigError(f"{name}: cannot be read ({err.strerror})") from None
        data: Any
        if suffix == ".toml":
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as err:
                raise ConfigError(f"{name}: invalid TOML: {err}") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{name}: invalid JSON: {err}") from None
        return cls.from_dict(data, source=name)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> AlphaTriangleConfig:
        """Validate a plain mapping; errors name ``source`` and the dotted field path."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(f"{source}: invalid configuration:\n{format_errors(err)}") from None


MAX_PROBLEMS_SHOWN = 10
"""Problems a config error lists; a file of thousands of bad fields gets a count of the rest."""


def format_errors(err: ValidationError) -> str:
    """One line per problem: ``  train.batch_size: Input should be greater than or equal to 1``
    (the first ``MAX_PROBLEMS_SHOWN``, then how many more)."""
    lines = []
    problems = err.errors()
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        where = shown(".".join(str(part) for part in problem["loc"])) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"  {where}: {message}")
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"  and {len(problems) - MAX_PROBLEMS_SHOWN} more")
    return "\n".join(lines)
