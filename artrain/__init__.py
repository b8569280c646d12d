"""artrain: train autoregressive generative models (WaveNet, Gated PixelCNN, Transformer) in PyTorch."""
