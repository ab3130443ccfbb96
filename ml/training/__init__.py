"""Training sets, the network, its training entrypoint, preprocessing and the retraining policy."""
