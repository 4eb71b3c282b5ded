"""MXNet Gluon MLP and CNN image classifiers (MNIST, Fashion-MNIST) for the BYOC images."""
