"""Datasets: the paper's toy problems (toy.py) and image readers (images.py)."""
from .toy import (ConcentricSphere, Data1D, ShiftedSines, ToyDataset, angles,  # noqa: F401
                  generalization_split, in_angle_range, sample_annulus)

# image datasets: MNIST / Fashion-MNIST / CIFAR-10 / SVHN readers and sklearn digits
from .images import *  # noqa: F401,F403,E402
