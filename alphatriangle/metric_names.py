"""Every metric name AlphaTriangle logs, and the context keys of its events, in one place
(namespaced literals, no imports).

``loss/*`` and ``train/*`` come from a gradient step, ``learn/*`` are the diagnostics that tell
the stages of learning apart (from the learner and the self-play workers), ``system/<role>/*`` from each process
(``trieye.system``: CPU % and RSS of the learner, the self-play workers, the evaluation actor
and the sidecar; ``system/gpu<i>/*`` from the learner's process when there are GPUs), ``selfplay/*`` and ``episode/*`` from the
self-play workers, ``eval/*`` from periodic evaluation, ``progress/*`` and ``buffer/*`` from the
driver's counters, ``speed/*`` are rates the sidecar derives. The sidecar's aggregation of each
is declared in ``alphatriangle.distributed.metrics``.
"""

LOSS_POLICY = "loss/policy"
LOSS_VALUE = "loss/value"
"""Grows in a healthy run: its targets (the score still to come) grow with the games."""
LOSS_VALUE_NORMALIZED = "loss/value_normalized"
"""``loss/value``'s squared error over the variance of the batch's targets (1 - R² of the value
head on the trained batch): it falls as the value head learns, however long the games grow."""
LOSS_REWARD = "loss/reward"
"""MuZero: the dynamics' reward loss over the unrolled steps."""
LOSS_CONSISTENCY = "loss/consistency"
"""MuZero with ``consistency_weight > 0``: 1 - cosine of unrolled and encoded next states."""
LOSS_AFTERSTATE_VALUE = "loss/afterstate_value"
"""Stochastic MuZero: the afterstate value loss at the steps where the game dealt."""
LOSS_CHANCE = "loss/chance"
"""Stochastic MuZero: -log of the predicted chance of the hand the game dealt."""
LOSS_TOTAL = "loss/total"
GRAD_NORM = "train/grad_norm"
POLICY_ENTROPY = "train/policy_entropy"
VALUE_PRED_MEAN = "train/value_pred_mean"
VALUE_TARGET_MEAN = "train/value_target_mean"
LEARNING_RATE = "train/lr"
LEARNER_SAMPLES = "learner/samples"

LEARN_VALUE_EXPLAINED_VARIANCE = "learn/value_explained_variance"
"""Self-play workers: ``1 - Var(target - prediction) / Var(target)`` of the value head on the
worker's newest positions, predicted before the learner trained on them
(``core.diagnostics.FreshPositions``)."""
LEARN_SEARCH_KL = "learn/search_kl"
"""Self-play workers: mean KL(search policy target || network prior) at the root over the
positions of the games that just ended: how much the search still adds to the network."""
LEARN_SAMPLE_AGE = "learn/sample_age"
"""Learner: mean age, in learner steps (weight versions), of the positions of a batch."""
LEARN_TIMES_SAMPLED_AT_EVICTION = "learn/times_sampled_at_eviction"
"""Learner: how often the positions that left the replay buffer had been sampled, on average."""
LEARN_AUGMENTED = "learn/augmented_fraction"
"""Learner, with ``[train] augment_symmetries``: the fraction of a batch's positions turned by
a symmetry other than the identity."""

MUZERO_REWARD_RANK_CLEAR = "muzero/reward_rank_clear"
"""Learner, MuZero: on a fixed set of positions that each offer a line clear, the share where
the move with the highest predicted reward clears (``core.muzero.probe``): near 0 for a model
whose reward cannot see the action, 1 for one that ranks clears first."""
MUZERO_REWARD_RANK_PAIRS = "muzero/reward_rank_pairs"
"""Learner, MuZero: on the same positions, the share of (clearing, non-clearing) move pairs
whose predicted rewards are in that order, averaged over the positions."""
MUZERO_Q_RANK_CLEAR = "muzero/q_rank_clear"
"""Learner, MuZero: on the same positions, the share where the move of highest predicted
``r + discount v(s')`` clears (what the search's Q sees, the value's noise included)."""
MUZERO_PRIOR_RANK_CLEAR = "muzero/prior_rank_clear"
"""Learner, MuZero: on the same positions, the share where the legal move of highest prior
(the root's policy) clears: whether the policy has learned what the search should teach it."""
MUZERO_Q_SPREAD = "muzero/q_spread"
"""Learner, MuZero: on the same positions, the mean of ``max - min`` of the predicted
``r + discount v(s')`` over each position's legal moves."""

BUFFER_SIZE = "buffer/size"
EPISODES = "progress/episodes"
SAMPLES_GENERATED = "progress/samples_generated"
SAMPLES_TRAINED = "progress/samples_trained"

EPISODE_END = "episode_end"
"""The event a self-play worker sends per finished game; its facts travel as context, under
the ``CTX_*`` keys below."""
CTX_SCORE = "score"
CTX_LENGTH = "length"
CTX_TRIANGLES_CLEARED = "triangles_cleared"
CTX_SIMULATIONS = "simulations"
CTX_WEIGHT_VERSION = "weight_version"
CTX_WORKER = "worker"
"""The self-play worker that played the game (a tag: no metric is made of it)."""
EPISODE_SCORE = "episode/score"
EPISODE_SCORE_MAX = "episode/score_max"
EPISODE_LENGTH = "episode/length"
EPISODE_TRIANGLES_CLEARED = "episode/triangles_cleared"
EPISODE_SIMULATIONS = "episode/simulations"
EPISODE_WEIGHT_VERSION = "episode/weight_version"
EPISODE_COUNT = "episode/count"
SELFPLAY_MOVES = "selfplay/moves"
WORKER_MOVES_PER_S = "worker/moves_per_s"
WORKER_SIMULATIONS_PER_S = "worker/simulations_per_s"

SPEED_EPISODES = "speed/episodes_per_s"
SPEED_MOVES = "speed/moves_per_s"
SPEED_SAMPLES_TRAINED = "speed/samples_trained_per_s"

EVAL_SCORE_MEAN = "eval/score_mean"
EVAL_SCORE_MEDIAN = "eval/score_median"
EVAL_SCORE_MAX = "eval/score_max"
EVAL_LENGTH_MEAN = "eval/length_mean"
EVAL_POLICY_SCORE_MEAN = "eval/policy_score_mean"
"""The network's policy alone (no search: the argmax of its prior over the legal moves) on the
same held-out seeds as ``eval/score_mean``, which plays the network with its search."""
EVAL_POLICY_LENGTH_MEAN = "eval/policy_length_mean"
EVAL_CLI_PREFIX = "eval_cli"
"""``alphatriangle eval`` logs ``eval_cli/<player>/<statistic>``, apart from the trainer's ``eval/*``."""

SYSTEM_LEARNER = "learner"
SYSTEM_SELFPLAY = "selfplay"
SYSTEM_EVAL = "eval"
"""Roles of ``trieye.system.ProcessSampler``: metrics ``system/<role>/cpu_percent`` and
``system/<role>/rss_mb`` (the sidecar's own role is ``sidecar``)."""
