"""Training data preparation, losses and the training loop for the generator."""
