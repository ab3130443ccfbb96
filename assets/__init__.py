"""Software-defined assets, one module per layer; each is a thin shell around ml/."""
