"""The algorithm: config, features, network, search, self-play of one game, replay buffer,
learner, players. No Ray and no run files here; ``distributed`` and ``app`` build on it."""
