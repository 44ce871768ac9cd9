"""The web studio (`noisecraft ui`): a local page over the same library calls the CLI makes. Nothing imports it."""
