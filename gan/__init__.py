"""gan: train GANs on CIFAR-10 from experiment files and compare them in TensorBoard."""
__version__ = "0.1.0"
