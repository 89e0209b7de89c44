"""odebench: adversarial robustness benchmark for Neural ODEs and ResNet-family classifiers."""

__version__ = "0.1.0"
