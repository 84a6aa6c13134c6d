"""Training our own Flux models: config, data caches, the autoencoder and flow-matching loops."""
