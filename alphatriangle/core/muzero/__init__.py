"""MuZero (``algorithm = "muzero"``): a learned model of the game, trained on trajectories,
searched in its latent space. The pipeline around it (workers, learner loop, sidecar, CLI) is
the one AlphaZero uses."""
