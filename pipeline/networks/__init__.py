"""Neural network definitions rebuilt in PyTorch from weights shipped in other formats."""
