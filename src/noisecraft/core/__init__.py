"""The mathematics of diffusion, in torch only: schedules, forward process, preconditioning, losses, EMA, oracles."""
